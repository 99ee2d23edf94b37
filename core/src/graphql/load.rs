//! Loading a schema from SDL: the Terminus directives (`@grpc`, `@sql`,
//! `@live`, `@from`) read into resolvers, the built-ins added, and the
//! whole-schema checks that turn a mistake into a `file:line:col` error.
//! See `docs/schema.md` for the directives.

use super::builtins::{self, BUILTIN_SCALARS};
use super::coerce;
use super::scalars::SCALARS;
use super::schema::{
    DirectiveDef, EnumValueDef, FieldDef, InputValueDef, Resolver, Schema, SchemaError,
    SchemaInner, TypeDef, TypeKind, TypeRef,
};
use super::sql::{rewrite_named_params, SqlStatement};
use crate::upstream::CallTimeouts;
use graphql_parser::schema as sdl;
use graphql_parser::Pos;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The smallest `@live(every:)` accepted: polling faster than this would
/// turn a subscription into a load test of the database.
pub const MIN_LIVE_EVERY: Duration = Duration::from_millis(50);

/// Names of the directives Terminus reads from the SDL; definitions of
/// these in the SDL (for editors) are accepted and ignored.
const TERMINUS_DIRECTIVES: [&str; 5] = ["grpc", "sql", "live", "from", "shared"];

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
    /// Where `@shared` is, if the field has it.
    shared_pos: Option<Pos>,
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
    let mut shared_pos = None;
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
                        ("request", false),
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
                    request: a.get("request").cloned(),
                    shared: false,
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
            "shared" => {
                directive_args(loader, d, &[])?;
                if shared_pos.is_some() {
                    return Err(loader.err(d.position, format!("@shared given twice on {what}")));
                }
                shared_pos = Some(d.position);
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
    if let Some(pos) = shared_pos {
        match &mut resolver {
            Some(Resolver::Grpc { shared, .. }) => *shared = true,
            Some(Resolver::Live { .. }) => {
                return Err(loader.err(pos, format!("@shared on field {type_name}.{}: @shared is for @grpc server streams; identical @live polls are already shared", f.name)))
            }
            _ => {
                return Err(loader.err(pos, format!("@shared on field {type_name}.{}: @shared needs @grpc on a subscription field (a server-streaming call)", f.name)))
            }
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
        shared_pos,
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

/// The position reported for problems that have no better place.
const FIRST_POS: Pos = Pos { line: 1, column: 1 };

/// What the SDL declares, read definition by definition, before the checks
/// that need the whole schema.
struct Declared {
    types: Vec<TypeDef>,
    /// Where each declared type is.
    positions: HashMap<String, Pos>,
    /// Positions of the fields declared in the SDL, by (type, field).
    raw_fields: HashMap<(String, String), RawField>,
    extensions: Vec<Extension>,
    schema_def: Option<(Pos, sdl::SchemaDefinition<'static, String>)>,
}

/// The root type names.
struct Roots {
    query: String,
    mutation: Option<String>,
    subscription: Option<String>,
}

impl Schema {
    /// Loads a schema from SDL text; `file` names it in errors.
    pub fn parse(sdl_text: &str, file: &str) -> Result<Schema, SchemaError> {
        let loader = Loader { file };
        let doc = parse_sdl(&loader, sdl_text)?;
        let Declared {
            mut types,
            positions,
            raw_fields,
            extensions,
            schema_def,
        } = declare(&loader, &doc)?;
        apply_extensions(&loader, &mut types, extensions)?;
        let (directives, meta_fields) = add_builtins(&mut types);
        let index = index_types(&types);
        let roots = root_types(&loader, &schema_def, &positions, &types, &index)?;
        check_fields(&loader, &types, &index, &roots, &raw_fields)?;
        check_input_fields(&loader, &types, &index, &positions)?;
        let schema = Schema {
            inner: Arc::new(SchemaInner {
                types,
                index,
                query: roots.query,
                mutation: roots.mutation,
                subscription: roots.subscription,
                description: None,
                directives,
                meta_fields,
            }),
        };
        check_defaults(&loader, &schema, &positions)?;
        Ok(schema)
    }
}

/// The SDL text parsed; a syntax error with its line and column.
fn parse_sdl(
    loader: &Loader<'_>,
    sdl_text: &str,
) -> Result<sdl::Document<'static, String>, SchemaError> {
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
    Ok(doc.into_static())
}

/// Every definition read: types with their fields and resolvers, type
/// extensions (applied later), the schema definition.
fn declare(
    loader: &Loader<'_>,
    doc: &sdl::Document<'static, String>,
) -> Result<Declared, SchemaError> {
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
                reject_unknown_directives(loader, &s.directives, &[], "the schema definition")?;
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
                        "custom directive @{} is not supported (Terminus reads @grpc, @sql, @live, @from, @shared and @deprecated)",
                        d.name
                    ),
                ));
            }
            sdl::Definition::TypeExtension(sdl::TypeExtension::Object(e)) => {
                reject_unknown_directives(
                    loader,
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
                    reserved(loader, f.position, &f.name)?;
                    let (fd, raw) = field_def(loader, &e.name, f)?;
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
                return Err(loader.err(pos, "only object types can be extended (`extend type`)"));
            }
            sdl::Definition::TypeDefinition(t) => match t {
                sdl::TypeDefinition::Scalar(s) => {
                    reserved(loader, s.position, &s.name)?;
                    let mut specified_by = None;
                    for d in &s.directives {
                        if d.name == "specifiedBy" {
                            specified_by =
                                Some(directive_args(loader, d, &[("url", true)])?["url"].clone());
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
                    reserved(loader, o.position, &o.name)?;
                    reject_unknown_directives(
                        loader,
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
                        reserved(loader, f.position, &f.name)?;
                        if fields.iter().any(|x| x.name == f.name) {
                            return Err(loader.err(
                                f.position,
                                format!("field {}.{} declared twice", o.name, f.name),
                            ));
                        }
                        let (fd, raw) = field_def(loader, &o.name, f)?;
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
                    reserved(loader, e.position, &e.name)?;
                    reject_unknown_directives(
                        loader,
                        &e.directives,
                        &[],
                        &format!("enum {}", e.name),
                    )?;
                    let mut values: Vec<EnumValueDef> = Vec::new();
                    for v in &e.values {
                        reject_unknown_directives(
                            loader,
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
                            deprecation: deprecation(loader, &v.directives)?,
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
                    reserved(loader, i.position, &i.name)?;
                    reject_unknown_directives(
                        loader,
                        &i.directives,
                        &["oneOf"],
                        &format!("input {}", i.name),
                    )?;
                    let one_of = i.directives.iter().any(|d| d.name == "oneOf");
                    let fields =
                        input_values(loader, &i.fields, &format!("field of input {}", i.name))?;
                    (
                        i.position,
                        TypeDef {
                            name: i.name.clone(),
                            description: i.description.clone(),
                            kind: TypeKind::InputObject { fields, one_of },
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
    Ok(Declared {
        types,
        positions,
        raw_fields,
        extensions,
        schema_def,
    })
}

/// `extend type` fields added to their types.
fn apply_extensions(
    loader: &Loader<'_>,
    types: &mut [TypeDef],
    extensions: Vec<Extension>,
) -> Result<(), SchemaError> {
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
                return Err(loader.err(fpos, format!("field {name}.{} declared twice", fd.name)));
            }
            fields.push(fd);
        }
    }
    Ok(())
}

/// The standard scalars and introspection types added to `types`; the
/// directives clients see and the meta fields returned.
fn add_builtins(types: &mut Vec<TypeDef>) -> (Vec<DirectiveDef>, Vec<FieldDef>) {
    for (name, description) in BUILTIN_SCALARS {
        types.push(TypeDef {
            name: name.to_string(),
            description: Some(description.to_string()),
            kind: TypeKind::Scalar { specified_by: None },
        });
    }
    // Terminus's scalars, unless the SDL declares one itself (with its own
    // description; the values are Terminus's either way).
    for (name, description, url) in SCALARS {
        if types.iter().any(|t| t.name == name) {
            continue;
        }
        types.push(TypeDef {
            name: name.to_string(),
            description: Some(description.to_string()),
            kind: TypeKind::Scalar {
                specified_by: Some(url.to_string()),
            },
        });
    }
    let (intro_types, directives, meta_fields) = builtins::builtin_definitions();
    types.extend(intro_types);
    (directives, meta_fields)
}

/// Type name to its index in `types`.
fn index_types(types: &[TypeDef]) -> HashMap<String, usize> {
    types
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect()
}

/// The root types (from the schema definition, or `Query`, `Mutation`,
/// `Subscription` by name), each a declared object type.
fn root_types(
    loader: &Loader<'_>,
    schema_def: &Option<(Pos, sdl::SchemaDefinition<'static, String>)>,
    positions: &HashMap<String, Pos>,
    types: &[TypeDef],
    index: &HashMap<String, usize>,
) -> Result<Roots, SchemaError> {
    let (query, mutation, subscription, root_pos) = match schema_def {
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
            FIRST_POS,
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
                    format!(
                    "the root type {root} is not declared (a schema needs at least `type Query`)"
                ),
                ))
            }
        }
    }
    Ok(Roots {
        query,
        mutation,
        subscription,
    })
}

/// Whole-schema checks of the declared fields: known output types, input
/// argument types, resolvers on root fields only and fitting their root,
/// SQL parameters that are arguments.
fn check_fields(
    loader: &Loader<'_>,
    types: &[TypeDef],
    index: &HashMap<String, usize>,
    roots: &Roots,
    raw_fields: &HashMap<(String, String), RawField>,
) -> Result<(), SchemaError> {
    let Roots {
        query,
        mutation,
        subscription,
    } = roots;
    for t in types {
        let TypeKind::Object { fields } = &t.kind else {
            continue;
        };
        if t.name.starts_with("__") {
            continue;
        }
        let is_query = t.name == *query;
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
                    loader,
                    types,
                    index,
                    &arg.ty,
                    *apos,
                    &format!("argument {what}({})", arg.name),
                )?;
            }
            let rpos = raw.resolver_pos.unwrap_or(raw.pos);
            if let (Some(pos), false) = (raw.shared_pos, is_subscription) {
                return Err(loader.err(pos, format!("@shared on field {what}: only subscription fields can be shared (a query or mutation call is not a stream)")));
            }
            if is_root && raw.from_pos.is_some() {
                return Err(loader.err(raw.from_pos.unwrap_or(raw.pos), format!("@from is for fields of nested object types; root field {what} gets its value from its resolver")));
            }
            match (&f.resolver, is_root) {
                (None, true) => {
                    return Err(loader.err(raw.pos, format!("root field {what} has no resolver: add @grpc, @sql{}", if is_subscription { " or @live (subscription)" } else { "" })))
                }
                (Some(Resolver::Sql { statement, reselect: None, .. }), false) => {
                    // A relation (`core/src/graphql/batch.rs`): one statement
                    // per level for all parents, keyed by a parent column.
                    super::batch::RelationSql::parse(&statement.original).map_err(|reason| {
                        loader.err(rpos, format!("relation {what}: {reason}"))
                    })?;
                    let own: Vec<String> = statement
                        .params
                        .iter()
                        .filter(|p| super::sql::parent_param(p).is_none())
                        .cloned()
                        .collect();
                    let own = SqlStatement {
                        params: own,
                        ..statement.clone()
                    };
                    check_params(loader, rpos, &what, f, &own, &[])?;
                }
                (Some(_), false) => {
                    return Err(loader.err(rpos, format!("field {what}: @grpc, @sql and @live belong on fields of the root types ({}); nested fields are projections of their parent's value (rename with @from), or relations: @sql without reselect reading :parent.<column>", [Some(query.as_str()), mutation.as_deref(), subscription.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(", "))))
                }
                (Some(Resolver::Sql { statement, reselect, .. }), true) => {
                    if is_subscription {
                        return Err(loader.err(rpos, format!("subscription field {what}: use @live for polled SQL (or @grpc for a server stream), not @sql")));
                    }
                    if is_query && !statement.returns_rows {
                        return Err(loader.err(rpos, format!("query field {what}: the @sql statement must return rows (SELECT); statements that change rows belong on Mutation")));
                    }
                    check_params(loader, rpos, &what, f, statement, &[])?;
                    if let Some(r) = reselect {
                        check_params(loader, rpos, &what, f, r, &["lastInsertId", "affectedRows"])?;
                    }
                }
                (Some(Resolver::Live { statement, .. }), true) => {
                    if !is_subscription {
                        return Err(loader.err(rpos, format!("field {what}: @live is for subscription fields; use @sql on {}", t.name)));
                    }
                    check_params(loader, rpos, &what, f, statement, &[])?;
                }
                (Some(Resolver::Grpc { request: Some(request), .. }), true) => {
                    let arg = f.args.iter().find(|a| &a.name == request);
                    let is_input_object = arg.is_some_and(|a| {
                        index.get(a.ty.named()).is_some_and(|i| {
                            matches!(types[*i].kind, TypeKind::InputObject { .. })
                                && !matches!(a.ty.nullable(), TypeRef::List(_))
                        })
                    });
                    if !is_input_object {
                        return Err(loader.err(rpos, format!("field {what}: @grpc request `{request}` must name an argument of the field whose type is an input object (its fields are the request's fields)")));
                    }
                }
                (Some(Resolver::Grpc { .. }), true) | (None, false) => {}
            }
        }
    }
    Ok(())
}

/// Fields of input objects have input types.
fn check_input_fields(
    loader: &Loader<'_>,
    types: &[TypeDef],
    index: &HashMap<String, usize>,
    positions: &HashMap<String, Pos>,
) -> Result<(), SchemaError> {
    for t in types {
        if let TypeKind::InputObject { fields, one_of } = &t.kind {
            if *one_of {
                for fd in fields {
                    if fd.ty.is_non_null() || fd.default.is_some() {
                        let pos = positions.get(&t.name).copied().unwrap_or(FIRST_POS);
                        return Err(loader.err(
                            pos,
                            format!(
                                "field {}.{}: the fields of a @oneOf input are nullable and have no default",
                                t.name, fd.name
                            ),
                        ));
                    }
                }
            }
            for fd in fields {
                let pos = positions.get(&t.name).copied().unwrap_or(FIRST_POS);
                check_input_type(
                    loader,
                    types,
                    index,
                    &fd.ty,
                    pos,
                    &format!("field {}.{}", t.name, fd.name),
                )?;
            }
        }
    }
    Ok(())
}

/// Defaults must be valid values of their types.
fn check_defaults(
    loader: &Loader<'_>,
    schema: &Schema,
    positions: &HashMap<String, Pos>,
) -> Result<(), SchemaError> {
    for t in &schema.inner.types {
        let pos = positions.get(&t.name).copied().unwrap_or(FIRST_POS);
        let check = |iv: &InputValueDef, what: String| -> Result<(), SchemaError> {
            if let Some(d) = &iv.default {
                coerce::literal_to_json(schema, d, &iv.ty, None)
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
            TypeKind::InputObject { fields, .. } => {
                for f in fields {
                    check(f, format!("field {}.{}", t.name, f.name))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
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
        if super::sql::claim_param(p).is_some() {
            // Bound from the caller's token at execution.
            continue;
        }
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
