//! Input coercion: GraphQL literals and JSON variable values to the JSON
//! values handed to upstreams (GraphQL spec section 3.x "Input Coercion").
//!
//! `Int` is a signed 32-bit integer, `Float` a double (an integer literal is
//! accepted), `ID` accepts a string or an integer and becomes a string, enum
//! values are their names, custom scalars pass through unchanged, a single
//! value given for a list becomes a one-item list.

use super::schema::{InputValueDef, Literal, Schema, TypeKind, TypeRef};
use serde_json::{Map, Number, Value};

/// Where a literal's variables get their values from.
#[derive(Clone, Copy)]
pub(crate) enum Vars<'a> {
    /// Constants only (schema defaults): a variable is an error.
    Forbidden,
    /// Validation: variables are checked elsewhere, by type compatibility.
    Unchecked,
    /// Execution: the operation's coerced variable values.
    Values(&'a Map<String, Value>),
}

fn scalar_literal(name: &str, lit: &Literal) -> Result<Value, String> {
    use graphql_parser::query::Value as L;
    match (name, lit) {
        ("Int", L::Int(n)) => {
            let i = n.as_i64().unwrap_or(i64::MAX);
            i32::try_from(i)
                .map(Value::from)
                .map_err(|_| format!("Int cannot represent non 32-bit signed integer value: {i}"))
        }
        ("Float", L::Int(n)) => Ok(Value::from(n.as_i64().unwrap_or_default() as f64)),
        ("Float", L::Float(f)) => Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| "Float cannot represent a non-finite value".to_string()),
        ("String", L::String(s)) => Ok(Value::String(s.clone())),
        ("Boolean", L::Boolean(b)) => Ok(Value::Bool(*b)),
        ("ID", L::String(s)) => Ok(Value::String(s.clone())),
        ("ID", L::Int(n)) => Ok(Value::String(n.as_i64().unwrap_or_default().to_string())),
        ("Int" | "Float" | "String" | "Boolean" | "ID", other) => Err(format!(
            "{name} cannot represent a non {} value: {}",
            name.to_lowercase(),
            print_literal(other)
        )),
        // Terminus's scalars check their values; any other custom scalar
        // passes the value through as JSON.
        (_, other) => {
            let plain = literal_as_plain_json(other);
            super::scalars::coerce_input(name, &plain).unwrap_or(Ok(plain))
        }
    }
}

fn literal_as_plain_json(lit: &Literal) -> Value {
    use graphql_parser::query::Value as L;
    match lit {
        L::Variable(v) => Value::String(format!("${v}")),
        L::Int(n) => Value::from(n.as_i64().unwrap_or_default()),
        L::Float(f) => Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        L::String(s) => Value::String(s.clone()),
        L::Boolean(b) => Value::Bool(*b),
        L::Null => Value::Null,
        L::Enum(e) => Value::String(e.clone()),
        L::List(l) => Value::Array(l.iter().map(literal_as_plain_json).collect()),
        L::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), literal_as_plain_json(v)))
                .collect(),
        ),
    }
}

/// Coerces a literal; `Ok(None)` means "absent" (a variable with no value),
/// which lets the caller apply a default.
pub(crate) fn literal_to_json_opt(
    schema: &Schema,
    lit: &Literal,
    ty: &TypeRef,
    vars: Vars<'_>,
) -> Result<Option<Value>, String> {
    use graphql_parser::query::Value as L;
    if let L::Variable(name) = lit {
        return match vars {
            Vars::Forbidden => Err(format!("variable ${name} cannot be used here")),
            Vars::Unchecked => Ok(Some(Value::Null)),
            Vars::Values(values) => match values.get(name) {
                None => Ok(None),
                Some(Value::Null) if ty.is_non_null() => Err(format!(
                    "expected a non-null value of type {ty}, but variable ${name} is null"
                )),
                Some(v) => Ok(Some(v.clone())),
            },
        };
    }
    match ty {
        TypeRef::NonNull(inner) => {
            if matches!(lit, L::Null) {
                return Err(format!("expected a value of type {ty}, found null"));
            }
            literal_to_json_opt(schema, lit, inner, vars)
        }
        _ if matches!(lit, L::Null) => Ok(Some(Value::Null)),
        TypeRef::List(item) => match lit {
            L::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    let v = literal_to_json_opt(schema, it, item, vars)?;
                    out.push(v.unwrap_or(Value::Null));
                }
                Ok(Some(Value::Array(out)))
            }
            single => {
                let v = literal_to_json_opt(schema, single, item, vars)?;
                Ok(Some(Value::Array(vec![v.unwrap_or(Value::Null)])))
            }
        },
        TypeRef::Named(name) => {
            let Some(t) = schema.get(name) else {
                return Err(format!("unknown type {name}"));
            };
            match &t.kind {
                TypeKind::Scalar { .. } => scalar_literal(name, lit).map(Some),
                TypeKind::Enum { values } => match lit {
                    L::Enum(e) if values.iter().any(|v| &v.name == e) => {
                        Ok(Some(Value::String(e.clone())))
                    }
                    other => Err(format!(
                        "value {} is not a value of enum {name}",
                        print_literal(other)
                    )),
                },
                TypeKind::InputObject { fields, one_of } => match lit {
                    L::Object(obj) => {
                        for k in obj.keys() {
                            if !fields.iter().any(|f| &f.name == k) {
                                return Err(format!(
                                    "field `{k}` is not defined by input type {name}"
                                ));
                            }
                        }
                        let mut out = Map::new();
                        for f in fields {
                            let given = match obj.get(&f.name) {
                                Some(v) => literal_to_json_opt(schema, v, &f.ty, vars)
                                    .map_err(|e| format!("field {name}.{}: {e}", f.name))?,
                                None => None,
                            };
                            if let Some(v) = apply_default(schema, f, given, name)? {
                                out.insert(f.name.clone(), v);
                            }
                        }
                        if *one_of {
                            check_one_of(name, &out)?;
                        }
                        Ok(Some(Value::Object(out)))
                    }
                    other => Err(format!(
                        "expected an object of input type {name}, found {}",
                        print_literal(other)
                    )),
                },
                TypeKind::Object { .. } => Err(format!("{name} is not an input type")),
            }
        }
    }
}

/// Coerces a literal that may not be absent (a schema default).
pub(crate) fn literal_to_json(
    schema: &Schema,
    lit: &Literal,
    ty: &TypeRef,
    vars: Option<&Map<String, Value>>,
) -> Result<Value, String> {
    let vars = vars.map_or(Vars::Forbidden, Vars::Values);
    Ok(literal_to_json_opt(schema, lit, ty, vars)?.unwrap_or(Value::Null))
}

/// The value of an argument or input field: the given value, else its
/// default, else absent (`None`); an error when a required one is missing.
fn apply_default(
    schema: &Schema,
    def: &InputValueDef,
    given: Option<Value>,
    owner: &str,
) -> Result<Option<Value>, String> {
    if let Some(v) = given {
        return Ok(Some(v));
    }
    if let Some(d) = &def.default {
        return literal_to_json(schema, d, &def.ty, None).map(Some);
    }
    if def.ty.is_non_null() {
        return Err(format!(
            "{owner}: `{}` of required type {} was not provided",
            def.name, def.ty
        ));
    }
    Ok(None)
}

/// Coerces a field's arguments for execution.
pub(crate) fn coerce_arguments(
    schema: &Schema,
    defs: &[InputValueDef],
    given: &[(String, Literal)],
    vars: &Map<String, Value>,
    owner: &str,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for def in defs {
        let v = match given.iter().find(|(n, _)| n == &def.name) {
            Some((_, lit)) => literal_to_json_opt(schema, lit, &def.ty, Vars::Values(vars))
                .map_err(|e| format!("argument `{}` of {owner}: {e}", def.name))?,
            None => None,
        };
        if let Some(v) = apply_default(schema, def, v, owner)? {
            out.insert(def.name.clone(), v);
        }
    }
    Ok(out)
}

/// Coerces a JSON variable value to `ty`; `at` names the value in errors.
pub(crate) fn json_to_input(
    schema: &Schema,
    value: &Value,
    ty: &TypeRef,
    at: &str,
) -> Result<Value, String> {
    match ty {
        TypeRef::NonNull(inner) => {
            if value.is_null() {
                return Err(format!("{at}: expected a non-null value of type {ty}"));
            }
            json_to_input(schema, value, inner, at)
        }
        _ if value.is_null() => Ok(Value::Null),
        TypeRef::List(item) => match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| json_to_input(schema, v, item, &format!("{at}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            single => Ok(Value::Array(vec![json_to_input(schema, single, item, at)?])),
        },
        TypeRef::Named(name) => {
            let Some(t) = schema.get(name) else {
                return Err(format!("{at}: unknown type {name}"));
            };
            let bad = || format!("{at}: {name} cannot represent {}", short(value));
            match &t.kind {
                TypeKind::Scalar { .. } => match name.as_str() {
                    "Int" => value
                        .as_i64()
                        .and_then(|i| i32::try_from(i).ok())
                        .map(Value::from)
                        .ok_or_else(bad),
                    "Float" => value.as_f64().map(Value::from).ok_or_else(bad),
                    "String" => value.is_string().then(|| value.clone()).ok_or_else(bad),
                    "Boolean" => value.is_boolean().then(|| value.clone()).ok_or_else(bad),
                    "ID" => match value {
                        Value::String(_) => Ok(value.clone()),
                        Value::Number(n) if n.is_i64() || n.is_u64() => {
                            Ok(Value::String(n.to_string()))
                        }
                        _ => Err(bad()),
                    },
                    other => super::scalars::coerce_input(other, value)
                        .unwrap_or_else(|| Ok(value.clone()))
                        .map_err(|error| format!("{at}: {error}")),
                },
                TypeKind::Enum { values } => match value {
                    Value::String(s) if values.iter().any(|v| &v.name == s) => Ok(value.clone()),
                    _ => Err(format!(
                        "{at}: value {} is not a value of enum {name}",
                        short(value)
                    )),
                },
                TypeKind::InputObject { fields, one_of } => {
                    let Value::Object(obj) = value else {
                        return Err(format!(
                            "{at}: expected an object of input type {name}, found {}",
                            short(value)
                        ));
                    };
                    for k in obj.keys() {
                        if !fields.iter().any(|f| &f.name == k) {
                            return Err(format!(
                                "{at}: field `{k}` is not defined by input type {name}"
                            ));
                        }
                    }
                    let mut out = Map::new();
                    for f in fields {
                        let given = match obj.get(&f.name) {
                            Some(v) => Some(json_to_input(
                                schema,
                                v,
                                &f.ty,
                                &format!("{at}.{}", f.name),
                            )?),
                            None => None,
                        };
                        if let Some(v) = apply_default(schema, f, given, at)? {
                            out.insert(f.name.clone(), v);
                        }
                    }
                    if *one_of {
                        check_one_of(name, &out).map_err(|e| format!("{at}: {e}"))?;
                    }
                    Ok(Value::Object(out))
                }
                TypeKind::Object { .. } => Err(format!("{at}: {name} is not an input type")),
            }
        }
    }
}

/// A `@oneOf` input object has exactly one field, and it is not null.
fn check_one_of(name: &str, fields: &Map<String, Value>) -> Result<(), String> {
    let given: Vec<&String> = fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k)
        .collect();
    if given.len() == 1 && fields.len() == 1 {
        return Ok(());
    }
    Err(format!(
        "{name} is @oneOf: give exactly one of its fields, not null (given: {})",
        if fields.is_empty() {
            "none".to_owned()
        } else {
            fields.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    ))
}

/// A short rendering of a JSON value for error messages.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        let mut cut = 57;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

/// Prints a literal in GraphQL syntax (introspection's `defaultValue`).
pub(crate) fn print_literal(lit: &Literal) -> String {
    use graphql_parser::query::Value as L;
    match lit {
        L::Variable(v) => format!("${v}"),
        L::Int(n) => n.as_i64().unwrap_or_default().to_string(),
        L::Float(f) => {
            let s = f.to_string();
            if s.contains(['.', 'e', 'E']) {
                s
            } else {
                format!("{s}.0")
            }
        }
        L::String(s) => Value::String(s.clone()).to_string(),
        L::Boolean(b) => b.to_string(),
        L::Null => "null".to_string(),
        L::Enum(e) => e.clone(),
        L::List(l) => format!(
            "[{}]",
            l.iter().map(print_literal).collect::<Vec<_>>().join(", ")
        ),
        L::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{k}: {}", print_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
