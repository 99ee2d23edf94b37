//! The schema: GraphQL SDL plus the Terminus directives that say which
//! upstream answers each root field. See `docs/schema.md` for the directives.

use super::sql::{rewrite_named_params, SqlStatement};
use super::{coerce, introspection};
use crate::upstream::CallTimeouts;
use graphql_parser::schema as sdl;
use graphql_parser::Pos;
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
    Scalar { specified_by: Option<String> },
    Object { fields: Vec<FieldDef> },
    Enum { values: Vec<EnumValueDef> },
    InputObject { fields: Vec<InputValueDef> },
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

/// The smallest `@live(every:)` accepted: polling faster than this would
/// turn a subscription into a load test of the database.
pub const MIN_LIVE_EVERY: Duration = Duration::from_millis(50);

const BUILTIN_SCALARS: [(&str, &str); 5] = [
    ("Int", "The `Int` scalar type represents non-fractional signed whole numeric values. Int can represent values between -(2^31) and 2^31 - 1."),
    ("Float", "The `Float` scalar type represents signed double-precision fractional values as specified by [IEEE 754](https://en.wikipedia.org/wiki/IEEE_floating_point)."),
    ("String", "The `String` scalar type represents textual data, represented as UTF-8 character sequences. The String type is most often used by GraphQL to represent free-form human-readable text."),
    ("Boolean", "The `Boolean` scalar type represents `true` or `false`."),
    ("ID", "The `ID` scalar type represents a unique identifier, often used to refetch an object or as key for a cache. The ID type appears in a JSON response as a String; however, it is not intended to be human-readable. When expected as an input type, any string (such as `\"4\"`) or integer (such as `4`) input value will be accepted as an ID."),
];

/// Names of the directives Terminus reads from the SDL; definitions of
/// these in the SDL (for editors) are accepted and ignored.
const TERMINUS_DIRECTIVES: [&str; 4] = ["grpc", "sql", "live", "from"];

struct Loader<'f> {
    file: &'f str,
}

impl Loader<'_> {
    fn err(&self, pos: Pos, message: impl Into<String>) -> SchemaError {
        SchemaError {
            file: self.file.to_string(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}

/// Reads the string arguments of a directive, rejecting unknown and missing
/// ones.
fn directive_args(
    loader: &Loader<'_>,
    d: &sdl::Directive<'static, String>,
    allowed: &[(&str, bool)],
) -> Result<HashMap<String, String>, SchemaError> {
    let mut out = HashMap::new();
    for (name, value) in &d.arguments {
        if !allowed.iter().any(|(a, _)| a == name) {
            let names: Vec<&str> = allowed.iter().map(|(a, _)| *a).collect();
            return Err(loader.err(
                d.position,
                format!(
                    "unknown argument `{name}` of @{}; expected one of: {}",
                    d.name,
                    names.join(", ")
                ),
            ));
        }
        if out.contains_key(name) {
            return Err(loader.err(
                d.position,
                format!("argument `{name}` of @{} given twice", d.name),
            ));
        }
        match value {
            sdl::Value::String(s) => {
                out.insert(name.clone(), s.clone());
            }
            _ => {
                return Err(loader.err(
                    d.position,
                    format!("argument `{name}` of @{} must be a string", d.name),
                ))
            }
        }
    }
    for (name, required) in allowed {
        if *required && !out.contains_key(*name) {
            return Err(loader.err(
                d.position,
                format!("@{} needs the argument `{name}`", d.name),
            ));
        }
    }
    Ok(out)
}

/// Parses a polling interval like `500ms`, `1s`, `2m`, `1h` (see
/// [`parse_duration`]) of at least [`MIN_LIVE_EVERY`].
pub fn parse_every(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < MIN_LIVE_EVERY {
        return Err(format!(
            "`{text}` is shorter than the minimum polling interval of {} ms",
            MIN_LIVE_EVERY.as_millis()
        ));
    }
    Ok(d)
}

/// Parses a duration like `500ms`, `1s`, `2m`, `1h`: a positive integer and
/// a unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
    let unit = &t[digits.len()..];
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like \"500ms\", \"1s\", \"2m\""))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "`{text}` has no known unit; use ms, s, m or h (\"500ms\", \"1s\")"
            ))
        }
    };
    if d.is_zero() {
        return Err(format!("`{text}` must be above zero"));
    }
    Ok(d)
}

fn deprecation(
    loader: &Loader<'_>,
    directives: &[sdl::Directive<'static, String>],
) -> Result<Option<String>, SchemaError> {
    for d in directives {
        if d.name == "deprecated" {
            let args = directive_args(loader, d, &[("reason", false)])?;
            return Ok(Some(
                args.get("reason")
                    .cloned()
                    .unwrap_or_else(|| "No longer supported".to_string()),
            ));
        }
    }
    Ok(None)
}

fn reject_unknown_directives(
    loader: &Loader<'_>,
    directives: &[sdl::Directive<'static, String>],
    allowed: &[&str],
    what: &str,
) -> Result<(), SchemaError> {
    for d in directives {
        if !allowed.contains(&d.name.as_str()) {
            return Err(loader.err(
                d.position,
                format!("unknown directive @{} on {what}", d.name),
            ));
        }
    }
    Ok(())
}

fn input_values(
    loader: &Loader<'_>,
    values: &[sdl::InputValue<'static, String>],
    what: &str,
) -> Result<Vec<InputValueDef>, SchemaError> {
    let mut out: Vec<InputValueDef> = Vec::new();
    for v in values {
        reject_unknown_directives(
            loader,
            &v.directives,
            &["deprecated"],
            &format!("{what} `{}`", v.name),
        )?;
        if out.iter().any(|o| o.name == v.name) {
            return Err(loader.err(v.position, format!("{what} `{}` declared twice", v.name)));
        }
        out.push(InputValueDef {
            name: v.name.clone(),
            description: v.description.clone(),
            ty: TypeRef::from_ast(&v.value_type),
            default: v.default_value.clone(),
            deprecation: deprecation(loader, &v.directives)?,
        });
    }
    Ok(out)
}

/// A field as read from the SDL, with its positions kept for the checks that
/// need the whole schema.
/// `extend type Name { fields }`: where, which type, the fields with their positions.
type Extension = (Pos, String, Vec<(FieldDef, Pos)>);

struct RawField {
    pos: Pos,
    arg_positions: Vec<Pos>,
    resolver_pos: Option<Pos>,
    from_pos: Option<Pos>,
}

fn field_def(
    loader: &Loader<'_>,
    type_name: &str,
    f: &sdl::Field<'static, String>,
) -> Result<(FieldDef, RawField), SchemaError> {
    let mut resolver = None;
    let mut resolver_pos = None;
    let mut source = None;
    let mut from_pos = None;
    for d in &f.directives {
        let what = format!("field {type_name}.{}", f.name);
        let r = match d.name.as_str() {
            "grpc" => {
                let a = directive_args(
                    loader,
                    d,
                    &[
                        ("upstream", true),
                        ("method", true),
                        ("result", false),
                        ("timeout", false),
                        ("streamTimeout", false),
                        ("idleTimeout", false),
                    ],
                )?;
                let duration = |name: &str| -> Result<Option<Duration>, SchemaError> {
                    a.get(name)
                        .map(|text| {
                            parse_duration(text).map_err(|reason| {
                                loader.err(d.position, format!("@grpc {name}: {reason}"))
                            })
                        })
                        .transpose()
                };
                let timeouts = CallTimeouts {
                    call: duration("timeout")?,
                    stream: duration("streamTimeout")?,
                    idle: duration("idleTimeout")?,
                };
                let method = a["method"].clone();
                let valid_method = method
                    .split_once('/')
                    .is_some_and(|(svc, m)| !svc.is_empty() && !m.is_empty() && !m.contains('/'));
                if !valid_method {
                    return Err(loader.err(
                        d.position,
                        format!("@grpc method `{method}` must look like `package.Service/Method`"),
                    ));
                }
                if a["upstream"].is_empty() {
                    return Err(loader.err(d.position, "@grpc upstream must not be empty"));
                }
                let result: Vec<String> = match a.get("result") {
                    Some(r) => {
                        let parts: Vec<String> = r.split('.').map(str::to_string).collect();
                        if parts.iter().any(String::is_empty) {
                            return Err(loader.err(
                                d.position,
                                format!("@grpc result `{r}` must be a field name or a dotted path like `reply.message`"),
                            ));
                        }
                        parts
                    }
                    None => Vec::new(),
                };
                Some(Resolver::Grpc {
                    upstream: a["upstream"].clone(),
                    method,
                    result,
                    timeouts,
                })
            }
            "sql" => {
                let a = directive_args(
                    loader,
                    d,
                    &[("db", true), ("query", true), ("reselect", false)],
                )?;
                let statement = rewrite_named_params(&a["query"])
                    .map_err(|e| loader.err(d.position, format!("@sql query: {}", e.0)))?;
                let reselect = match a.get("reselect") {
                    Some(r) => {
                        let s = rewrite_named_params(r).map_err(|e| {
                            loader.err(d.position, format!("@sql reselect: {}", e.0))
                        })?;
                        if !s.returns_rows {
                            return Err(loader.err(d.position, "@sql reselect must be a SELECT"));
                        }
                        if statement.returns_rows {
                            return Err(loader.err(
                                d.position,
                                "@sql reselect is for statements that change rows (INSERT, UPDATE, DELETE); this query already returns rows",
                            ));
                        }
                        Some(s)
                    }
                    None => None,
                };
                Some(Resolver::Sql {
                    db: a["db"].clone(),
                    statement,
                    reselect,
                })
            }
            "live" => {
                let a =
                    directive_args(loader, d, &[("db", true), ("query", true), ("every", true)])?;
                let statement = rewrite_named_params(&a["query"])
                    .map_err(|e| loader.err(d.position, format!("@live query: {}", e.0)))?;
                if !statement.returns_rows {
                    return Err(loader.err(d.position, "@live query must be a SELECT"));
                }
                let every = parse_every(&a["every"])
                    .map_err(|e| loader.err(d.position, format!("@live every: {e}")))?;
                Some(Resolver::Live {
                    db: a["db"].clone(),
                    statement,
                    every,
                })
            }
            "from" => {
                let a = directive_args(loader, d, &[("field", true)])?;
                if source.is_some() {
                    return Err(loader.err(d.position, format!("@from given twice on {what}")));
                }
                source = Some(a["field"].clone());
                from_pos = Some(d.position);
                None
            }
            "deprecated" => None,
            other => {
                return Err(loader.err(d.position, format!("unknown directive @{other} on {what}")))
            }
        };
        if let Some(r) = r {
            if resolver.is_some() {
                return Err(loader.err(
                    d.position,
                    format!("{what} has more than one of @grpc, @sql, @live"),
                ));
            }
            resolver = Some(r);
            resolver_pos = Some(d.position);
        }
    }
    let args = input_values(
        loader,
        &f.arguments,
        &format!("argument of {type_name}.{}", f.name),
    )?;
    let raw = RawField {
        pos: f.position,
        arg_positions: f.arguments.iter().map(|a| a.position).collect(),
        resolver_pos,
        from_pos,
    };
    Ok((
        FieldDef {
            name: f.name.clone(),
            description: f.description.clone(),
            args,
            ty: TypeRef::from_ast(&f.field_type),
            deprecation: deprecation(loader, &f.directives)?,
            resolver,
            source,
        },
        raw,
    ))
}

fn reserved(loader: &Loader<'_>, pos: Pos, name: &str) -> Result<(), SchemaError> {
    if name.starts_with("__") {
        return Err(loader.err(
            pos,
            format!("`{name}`: names starting with `__` are reserved for introspection"),
        ));
    }
    Ok(())
}

fn sdl_pos_from_error(text: &str) -> Pos {
    if let Some(idx) = text.find("Parse error at ") {
        let rest = &text[idx + "Parse error at ".len()..];
        let mut it = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty());
        if let (Some(Ok(line)), Some(Ok(column))) =
            (it.next().map(str::parse), it.next().map(str::parse))
        {
            return Pos { line, column };
        }
    }
    Pos { line: 1, column: 1 }
}

impl Schema {
    /// Loads a schema from SDL text; `file` names it in errors.
    pub fn parse(sdl_text: &str, file: &str) -> Result<Schema, SchemaError> {
        let loader = Loader { file };
        let doc = sdl::parse_schema::<String>(sdl_text).map_err(|e| {
            let text = e.to_string();
            let msg =
                super::errors::clean_parse_message(text.trim_start_matches("schema parse error: "));
            loader.err(
                sdl_pos_from_error(&text),
                format!(
                    "syntax error: {}",
                    if msg.is_empty() { text.clone() } else { msg }
                ),
            )
        })?;
        let doc = doc.into_static();

        let mut types: Vec<TypeDef> = Vec::new();
        let mut positions: HashMap<String, Pos> = HashMap::new();
        let mut raw_fields: HashMap<(String, String), RawField> = HashMap::new();
        let mut extensions: Vec<Extension> = Vec::new();
        let mut schema_def: Option<(Pos, sdl::SchemaDefinition<'static, String>)> = None;

        for def in &doc.definitions {
            let (pos, tdef) = match def {
                sdl::Definition::SchemaDefinition(s) => {
                    if schema_def.is_some() {
                        return Err(loader.err(s.position, "the schema definition is given twice"));
                    }
                    reject_unknown_directives(
                        &loader,
                        &s.directives,
                        &[],
                        "the schema definition",
                    )?;
                    schema_def = Some((s.position, s.clone()));
                    continue;
                }
                sdl::Definition::DirectiveDefinition(d) => {
                    if TERMINUS_DIRECTIVES.contains(&d.name.as_str()) {
                        continue;
                    }
                    return Err(loader.err(
                        d.position,
                        format!(
                            "custom directive @{} is not supported (Terminus reads @grpc, @sql, @live, @from and @deprecated)",
                            d.name
                        ),
                    ));
                }
                sdl::Definition::TypeExtension(sdl::TypeExtension::Object(e)) => {
                    reject_unknown_directives(
                        &loader,
                        &e.directives,
                        &[],
                        &format!("extend type {}", e.name),
                    )?;
                    if let Some(i) = e.implements_interfaces.first() {
                        return Err(loader.err(
                            e.position,
                            format!(
                                "extend type {} implements {i}: interfaces are not supported",
                                e.name
                            ),
                        ));
                    }
                    let mut fields = Vec::new();
                    for f in &e.fields {
                        reserved(&loader, f.position, &f.name)?;
                        let (fd, raw) = field_def(&loader, &e.name, f)?;
                        fields.push((fd, f.position));
                        raw_fields.insert((e.name.clone(), f.name.clone()), raw);
                    }
                    extensions.push((e.position, e.name.clone(), fields));
                    continue;
                }
                sdl::Definition::TypeExtension(ext) => {
                    let pos = match ext {
                        sdl::TypeExtension::Scalar(e) => e.position,
                        sdl::TypeExtension::Object(e) => e.position,
                        sdl::TypeExtension::Interface(e) => e.position,
                        sdl::TypeExtension::Union(e) => e.position,
                        sdl::TypeExtension::Enum(e) => e.position,
                        sdl::TypeExtension::InputObject(e) => e.position,
                    };
                    return Err(
                        loader.err(pos, "only object types can be extended (`extend type`)")
                    );
                }
                sdl::Definition::TypeDefinition(t) => match t {
                    sdl::TypeDefinition::Scalar(s) => {
                        reserved(&loader, s.position, &s.name)?;
                        let mut specified_by = None;
                        for d in &s.directives {
                            if d.name == "specifiedBy" {
                                specified_by = Some(
                                    directive_args(&loader, d, &[("url", true)])?["url"].clone(),
                                );
                            } else {
                                return Err(loader.err(
                                    d.position,
                                    format!("unknown directive @{} on scalar {}", d.name, s.name),
                                ));
                            }
                        }
                        (
                            s.position,
                            TypeDef {
                                name: s.name.clone(),
                                description: s.description.clone(),
                                kind: TypeKind::Scalar { specified_by },
                            },
                        )
                    }
                    sdl::TypeDefinition::Object(o) => {
                        reserved(&loader, o.position, &o.name)?;
                        reject_unknown_directives(
                            &loader,
                            &o.directives,
                            &[],
                            &format!("type {}", o.name),
                        )?;
                        if let Some(i) = o.implements_interfaces.first() {
                            return Err(loader.err(
                                o.position,
                                format!(
                                    "type {} implements {i}: interfaces are not supported",
                                    o.name
                                ),
                            ));
                        }
                        let mut fields: Vec<FieldDef> = Vec::new();
                        for f in &o.fields {
                            reserved(&loader, f.position, &f.name)?;
                            if fields.iter().any(|x| x.name == f.name) {
                                return Err(loader.err(
                                    f.position,
                                    format!("field {}.{} declared twice", o.name, f.name),
                                ));
                            }
                            let (fd, raw) = field_def(&loader, &o.name, f)?;
                            fields.push(fd);
                            raw_fields.insert((o.name.clone(), f.name.clone()), raw);
                        }
                        if fields.is_empty() {
                            return Err(
                                loader.err(o.position, format!("type {} has no fields", o.name))
                            );
                        }
                        (
                            o.position,
                            TypeDef {
                                name: o.name.clone(),
                                description: o.description.clone(),
                                kind: TypeKind::Object { fields },
                            },
                        )
                    }
                    sdl::TypeDefinition::Interface(i) => {
                        return Err(loader.err(
                            i.position,
                            format!(
                                "interface {}: interfaces are not supported; use object types",
                                i.name
                            ),
                        ))
                    }
                    sdl::TypeDefinition::Union(u) => {
                        return Err(loader.err(
                            u.position,
                            format!(
                                "union {}: unions are not supported; use object types",
                                u.name
                            ),
                        ))
                    }
                    sdl::TypeDefinition::Enum(e) => {
                        reserved(&loader, e.position, &e.name)?;
                        reject_unknown_directives(
                            &loader,
                            &e.directives,
                            &[],
                            &format!("enum {}", e.name),
                        )?;
                        let mut values: Vec<EnumValueDef> = Vec::new();
                        for v in &e.values {
                            reject_unknown_directives(
                                &loader,
                                &v.directives,
                                &["deprecated"],
                                &format!("enum value {}.{}", e.name, v.name),
                            )?;
                            if matches!(v.name.as_str(), "true" | "false" | "null") {
                                return Err(loader.err(
                                    v.position,
                                    format!("enum value `{}` is not allowed", v.name),
                                ));
                            }
                            if values.iter().any(|x| x.name == v.name) {
                                return Err(loader.err(
                                    v.position,
                                    format!("enum value {}.{} declared twice", e.name, v.name),
                                ));
                            }
                            values.push(EnumValueDef {
                                name: v.name.clone(),
                                description: v.description.clone(),
                                deprecation: deprecation(&loader, &v.directives)?,
                            });
                        }
                        (
                            e.position,
                            TypeDef {
                                name: e.name.clone(),
                                description: e.description.clone(),
                                kind: TypeKind::Enum { values },
                            },
                        )
                    }
                    sdl::TypeDefinition::InputObject(i) => {
                        reserved(&loader, i.position, &i.name)?;
                        reject_unknown_directives(
                            &loader,
                            &i.directives,
                            &[],
                            &format!("input {}", i.name),
                        )?;
                        let fields = input_values(
                            &loader,
                            &i.fields,
                            &format!("field of input {}", i.name),
                        )?;
                        (
                            i.position,
                            TypeDef {
                                name: i.name.clone(),
                                description: i.description.clone(),
                                kind: TypeKind::InputObject { fields },
                            },
                        )
                    }
                },
            };
            if positions.contains_key(&tdef.name)
                || BUILTIN_SCALARS.iter().any(|(n, _)| *n == tdef.name)
            {
                return Err(loader.err(pos, format!("type {} is declared twice", tdef.name)));
            }
            positions.insert(tdef.name.clone(), pos);
            types.push(tdef);
        }

        for (pos, name, new_fields) in extensions {
            let Some(TypeDef {
                kind: TypeKind::Object { fields },
                ..
            }) = types.iter_mut().find(|t| t.name == name)
            else {
                return Err(loader.err(
                    pos,
                    format!("extend type {name}: there is no object type {name} to extend"),
                ));
            };
            for (fd, fpos) in new_fields {
                if fields.iter().any(|x| x.name == fd.name) {
                    return Err(
                        loader.err(fpos, format!("field {name}.{} declared twice", fd.name))
                    );
                }
                fields.push(fd);
            }
        }

        for (name, description) in BUILTIN_SCALARS {
            types.push(TypeDef {
                name: name.to_string(),
                description: Some(description.to_string()),
                kind: TypeKind::Scalar { specified_by: None },
            });
        }
        let (intro_types, directives, meta_fields) = introspection::builtin_definitions();
        types.extend(intro_types);
        let index: HashMap<String, usize> = types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();

        // Root types.
        let first_pos = Pos { line: 1, column: 1 };
        let (query, mutation, subscription, root_pos) = match &schema_def {
            Some((pos, s)) => {
                let q = s.query.clone().ok_or_else(|| {
                    loader.err(*pos, "the schema definition has no `query` root type")
                })?;
                (q, s.mutation.clone(), s.subscription.clone(), *pos)
            }
            None => (
                "Query".to_string(),
                positions
                    .contains_key("Mutation")
                    .then(|| "Mutation".to_string()),
                positions
                    .contains_key("Subscription")
                    .then(|| "Subscription".to_string()),
                first_pos,
            ),
        };
        for root in std::iter::once(&query)
            .chain(mutation.iter())
            .chain(subscription.iter())
        {
            match index.get(root).map(|i| &types[*i].kind) {
                Some(TypeKind::Object { .. }) if positions.contains_key(root) => {}
                Some(_) => {
                    return Err(loader.err(
                        positions.get(root).copied().unwrap_or(root_pos),
                        format!("root type {root} must be an object type"),
                    ))
                }
                None => {
                    return Err(loader.err(
                        root_pos,
                        format!("the root type {root} is not declared (a schema needs at least `type Query`)"),
                    ))
                }
            }
        }

        // Whole-schema checks of fields.
        for t in &types {
            let TypeKind::Object { fields } = &t.kind else {
                continue;
            };
            if t.name.starts_with("__") {
                continue;
            }
            let is_query = t.name == query;
            let is_mutation = mutation.as_deref() == Some(t.name.as_str());
            let is_subscription = subscription.as_deref() == Some(t.name.as_str());
            let is_root = is_query || is_mutation || is_subscription;
            for f in fields {
                let Some(raw) = raw_fields.get(&(t.name.clone(), f.name.clone())) else {
                    continue;
                };
                let what = format!("{}.{}", t.name, f.name);
                match index.get(f.ty.named()) {
                    None => {
                        return Err(loader.err(
                            raw.pos,
                            format!("field {what}: unknown type {}", f.ty.named()),
                        ))
                    }
                    Some(i) if !types[*i].is_output() => {
                        return Err(loader.err(
                            raw.pos,
                            format!(
                                "field {what}: {} is an input type and cannot be a field's type",
                                f.ty.named()
                            ),
                        ))
                    }
                    _ => {}
                }
                for (arg, apos) in f.args.iter().zip(&raw.arg_positions) {
                    check_input_type(
                        &loader,
                        &types,
                        &index,
                        &arg.ty,
                        *apos,
                        &format!("argument {what}({})", arg.name),
                    )?;
                }
                let rpos = raw.resolver_pos.unwrap_or(raw.pos);
                if is_root && raw.from_pos.is_some() {
                    return Err(loader.err(raw.from_pos.unwrap_or(raw.pos), format!("@from is for fields of nested object types; root field {what} gets its value from its resolver")));
                }
                match (&f.resolver, is_root) {
                    (None, true) => {
                        return Err(loader.err(raw.pos, format!("root field {what} has no resolver: add @grpc, @sql{}", if is_subscription { " or @live (subscription)" } else { "" })))
                    }
                    (Some(_), false) => {
                        return Err(loader.err(rpos, format!("field {what}: @grpc, @sql and @live belong on fields of the root types ({}); nested fields are projections of their parent's value (rename with @from)", [Some(query.as_str()), mutation.as_deref(), subscription.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(", "))))
                    }
                    (Some(Resolver::Sql { statement, reselect, .. }), true) => {
                        if is_subscription {
                            return Err(loader.err(rpos, format!("subscription field {what}: use @live for polled SQL (or @grpc for a server stream), not @sql")));
                        }
                        if is_query && !statement.returns_rows {
                            return Err(loader.err(rpos, format!("query field {what}: the @sql statement must return rows (SELECT); statements that change rows belong on Mutation")));
                        }
                        check_params(&loader, rpos, &what, f, statement, &[])?;
                        if let Some(r) = reselect {
                            check_params(&loader, rpos, &what, f, r, &["lastInsertId", "affectedRows"])?;
                        }
                    }
                    (Some(Resolver::Live { statement, .. }), true) => {
                        if !is_subscription {
                            return Err(loader.err(rpos, format!("field {what}: @live is for subscription fields; use @sql on {}", t.name)));
                        }
                        check_params(&loader, rpos, &what, f, statement, &[])?;
                    }
                    (Some(Resolver::Grpc { .. }), true) | (None, false) => {}
                }
            }
        }
        for t in &types {
            if let TypeKind::InputObject { fields } = &t.kind {
                for fd in fields {
                    let pos = positions.get(&t.name).copied().unwrap_or(first_pos);
                    check_input_type(
                        &loader,
                        &types,
                        &index,
                        &fd.ty,
                        pos,
                        &format!("field {}.{}", t.name, fd.name),
                    )?;
                }
            }
        }

        let schema = Schema {
            inner: Arc::new(SchemaInner {
                types,
                index,
                query,
                mutation,
                subscription,
                description: None,
                directives,
                meta_fields,
            }),
        };
        // Defaults must be valid values of their types.
        for t in &schema.inner.types {
            let pos = positions.get(&t.name).copied().unwrap_or(first_pos);
            let check = |iv: &InputValueDef, what: String| -> Result<(), SchemaError> {
                if let Some(d) = &iv.default {
                    coerce::literal_to_json(&schema, d, &iv.ty, None)
                        .map_err(|e| loader.err(pos, format!("default of {what}: {e}")))?;
                }
                Ok(())
            };
            match &t.kind {
                TypeKind::Object { fields } => {
                    for f in fields {
                        for a in &f.args {
                            check(a, format!("argument {}.{}({})", t.name, f.name, a.name))?;
                        }
                    }
                }
                TypeKind::InputObject { fields } => {
                    for f in fields {
                        check(f, format!("field {}.{}", t.name, f.name))?;
                    }
                }
                _ => {}
            }
        }
        Ok(schema)
    }

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

fn check_input_type(
    loader: &Loader<'_>,
    types: &[TypeDef],
    index: &HashMap<String, usize>,
    ty: &TypeRef,
    pos: Pos,
    what: &str,
) -> Result<(), SchemaError> {
    match index.get(ty.named()) {
        None => Err(loader.err(pos, format!("{what}: unknown type {}", ty.named()))),
        Some(i) if !types[*i].is_input() => Err(loader.err(
            pos,
            format!(
                "{what}: {} is an object type and cannot be an input; declare an `input` type",
                ty.named()
            ),
        )),
        _ => Ok(()),
    }
}

fn check_params(
    loader: &Loader<'_>,
    pos: Pos,
    what: &str,
    f: &FieldDef,
    s: &SqlStatement,
    extra: &[&str],
) -> Result<(), SchemaError> {
    for p in &s.params {
        if !f.args.iter().any(|a| &a.name == p) && !extra.contains(&p.as_str()) {
            let mut known: Vec<&str> = f.args.iter().map(|a| a.name.as_str()).collect();
            known.extend_from_slice(extra);
            return Err(loader.err(
                pos,
                format!(
                    "field {what}: SQL parameter :{p} is not an argument of the field (arguments: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            ));
        }
    }
    Ok(())
}
