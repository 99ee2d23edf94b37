//! Shaping an upstream JSON value into a field's selection set: aliases,
//! `__typename`, leaf serialization, non-null propagation, errors with
//! `path` (GraphQL spec section 6.4.3 "Value Completion").
//!
//! Leaf serialization is lenient where upstreams are predictably loose:
//! `Int` accepts an integral float and a string holding an integer (proto3
//! JSON writes int64 as a string) as long as the value fits 32 bits; `Float`
//! accepts a numeric string; `Boolean` accepts a number (MySQL `TINYINT(1)`)
//! as "not zero"; `String` and `ID` accept numbers and render them. Custom
//! scalars pass through unchanged.
//!
//! An object field reads the key named by `@from(field:)`, else the field's
//! name, else the field's name in lowerCamelCase (how proto3 JSON writes
//! `seq_no`). With `proto3_defaults` (values from gRPC), a missing key of a
//! non-null scalar, enum or list field is the proto3 default (0, "", false,
//! the enum's first value, []), because proto3 JSON may omit default values.

use super::budget::ResponseBudget;
use super::errors::{GraphQLError, PathSegment, INTERNAL_SERVER_ERROR};
use super::plan::PlannedField;
use super::schema::{Schema, TypeKind, TypeRef};
use serde_json::{Map, Value};

/// Marker: this position became null and the null must move to the nearest
/// nullable parent (its error is already recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Propagate;

pub(crate) struct Shaper<'a> {
    pub schema: &'a Schema,
    pub errors: Vec<GraphQLError>,
    pub proto3_defaults: bool,
    /// `max_response_bytes`, charged as the value is built; once it is
    /// exceeded, shaping stops with `Propagate` up to the root.
    pub budget: ResponseBudget,
    /// The upstream key (message field, column) the field being completed
    /// was read from, named in errors.
    key: Option<String>,
}

pub(crate) use super::names::{lower_camel, snake_case};

impl<'a> Shaper<'a> {
    pub fn new(schema: &'a Schema, proto3_defaults: bool, budget: ResponseBudget) -> Self {
        Shaper {
            schema,
            errors: Vec::new(),
            proto3_defaults,
            budget,
            key: None,
        }
    }

    /// Charges a built leaf; `Propagate` once the budget is exceeded.
    fn charge(&mut self, v: Value) -> Result<Value, Propagate> {
        if self.budget.value(&v) {
            Ok(v)
        } else {
            Err(Propagate)
        }
    }

    fn error(&mut self, field: &PlannedField, path: &[PathSegment], mut message: String) {
        // A gRPC value names the message field it was read from.
        if let (true, Some(key)) = (self.proto3_defaults, &self.key) {
            message = format!(
                "{} (read from the upstream message field `{key}`).",
                message.trim_end_matches('.')
            );
        }
        self.errors.push(
            GraphQLError::new(message, INTERNAL_SERVER_ERROR)
                .at(field.pos)
                .with_path(path.to_vec()),
        );
    }

    /// Completes `value` as `field` of type `ty` at `path`.
    pub fn complete(
        &mut self,
        field: &PlannedField,
        ty: &TypeRef,
        value: &Value,
        path: &mut Vec<PathSegment>,
    ) -> Result<Value, Propagate> {
        match ty {
            TypeRef::NonNull(inner) => {
                let v = self.complete_nullable(field, inner, value, path)?;
                if v.is_null() {
                    self.error(
                        field,
                        path,
                        format!(
                            "Cannot return null for non-nullable field {}.{}.",
                            field.parent, field.name
                        ),
                    );
                    return Err(Propagate);
                }
                Ok(v)
            }
            other => match self.complete_nullable(field, other, value, path) {
                Ok(v) => Ok(v),
                // Past the budget nothing is kept: stop up to the root.
                Err(Propagate) if self.budget.exceeded() => Err(Propagate),
                Err(Propagate) => Ok(Value::Null),
            },
        }
    }

    fn complete_nullable(
        &mut self,
        field: &PlannedField,
        ty: &TypeRef,
        value: &Value,
        path: &mut Vec<PathSegment>,
    ) -> Result<Value, Propagate> {
        if value.is_null() {
            return self.charge(Value::Null);
        }
        // SQL values: a JSON document arrives as text on MariaDB (its JSON
        // type is LONGTEXT) and from JSON functions (`JSON_ARRAYAGG`,
        // `JSON_OBJECT`). Where the schema wants a list, an object or the
        // `JSON` scalar, that text is parsed.
        let parsed;
        let value = match value {
            Value::String(text) if !self.proto3_defaults && self.wants_json(ty) => {
                match serde_json::from_str::<Value>(text) {
                    Ok(v) => {
                        parsed = v;
                        &parsed
                    }
                    Err(_) => value,
                }
            }
            _ => value,
        };
        if value.is_null() {
            return Ok(Value::Null);
        }
        match ty {
            TypeRef::NonNull(_) => self.complete(field, ty, value, path),
            TypeRef::List(item) => {
                let Value::Array(items) = value else {
                    self.error(
                        field,
                        path,
                        format!(
                            "Expected a list for field {}.{}, got {}.",
                            field.parent,
                            field.name,
                            kind_of(value)
                        ),
                    );
                    return Err(Propagate);
                };
                if !self.budget.charge(2) {
                    return Err(Propagate);
                }
                let mut out = Vec::with_capacity(items.len());
                for (i, it) in items.iter().enumerate() {
                    if !self.budget.charge(1) {
                        return Err(Propagate);
                    }
                    path.push(PathSegment::Index(i));
                    let r = self.complete(field, item, it, path);
                    path.pop();
                    out.push(r?);
                }
                Ok(Value::Array(out))
            }
            TypeRef::Named(name) => {
                let Some(t) = self.schema.get(name) else {
                    return Ok(Value::Null);
                };
                match &t.kind {
                    TypeKind::Scalar { .. } => match serialize_scalar(name, value) {
                        Some(v) => self.charge(v),
                        None => {
                            self.error(
                                field,
                                path,
                                format!(
                                    "{name} cannot represent value {} of field {}.{}.",
                                    short(value),
                                    field.parent,
                                    field.name
                                ),
                            );
                            Err(Propagate)
                        }
                    },
                    TypeKind::Enum { values } => match value {
                        Value::String(s) if values.iter().any(|v| &v.name == s) => {
                            self.charge(value.clone())
                        }
                        _ => {
                            self.error(
                                field,
                                path,
                                format!(
                                    "Enum {name} cannot represent value {} of field {}.{}.",
                                    short(value),
                                    field.parent,
                                    field.name
                                ),
                            );
                            Err(Propagate)
                        }
                    },
                    TypeKind::Object { .. } => {
                        let Value::Object(source) = value else {
                            self.error(
                                field,
                                path,
                                format!(
                                    "Expected an object for field {}.{}, got {}.",
                                    field.parent,
                                    field.name,
                                    kind_of(value)
                                ),
                            );
                            return Err(Propagate);
                        };
                        let name = name.clone();
                        self.complete_object(&name, &field.selection, source, path)
                            .map(Value::Object)
                    }
                    TypeKind::InputObject { .. } => Ok(Value::Null),
                }
            }
        }
    }

    /// Completes the selection of an object of type `type_name`.
    pub fn complete_object(
        &mut self,
        type_name: &str,
        selection: &[PlannedField],
        source: &Map<String, Value>,
        path: &mut Vec<PathSegment>,
    ) -> Result<Map<String, Value>, Propagate> {
        let mut out = Map::new();
        let mut failed = false;
        if !self.budget.charge(2) {
            return Err(Propagate);
        }
        for f in selection {
            if !self.budget.key(&f.key) {
                return Err(Propagate);
            }
            path.push(PathSegment::Key(f.key.clone()));
            if f.name == "__typename" {
                let v = self.charge(Value::String(type_name.to_string()));
                let Ok(v) = v else {
                    path.pop();
                    return Err(Propagate);
                };
                out.insert(f.key.clone(), v);
                path.pop();
                continue;
            }
            let from = self
                .schema
                .field(type_name, &f.name)
                .and_then(|d| d.source.clone());
            // `@from` may name the proto field (`total_sold`) or its proto3
            // JSON name (`totalSold`), which is what gRPC values carry. A
            // relation's rows were stitched into the parent row
            // (`core/src/graphql/batch.rs`); SQL columns may be snake_case.
            let (key, found) = match &from {
                _ if super::batch::is_relation(self.schema, type_name, &f.name) => {
                    let stitched = super::batch::stitched_key(&f.key);
                    let found = source.get(&stitched);
                    (stitched, found)
                }
                Some(key) => match source.get(key) {
                    Some(v) => (key.clone(), Some(v)),
                    None => (lower_camel(key), source.get(&lower_camel(key))),
                },
                None => match source.get(&f.name) {
                    Some(v) => (f.name.clone(), Some(v)),
                    None => match source.get(&lower_camel(&f.name)) {
                        Some(v) => (lower_camel(&f.name), Some(v)),
                        // SQL columns: `customerId` reads `customer_id`.
                        None if !self.proto3_defaults => {
                            (snake_case(&f.name), source.get(&snake_case(&f.name)))
                        }
                        None => (lower_camel(&f.name), None),
                    },
                },
            };
            let default;
            let value = match found {
                Some(v) => v,
                None => {
                    default = if self.proto3_defaults {
                        self.proto3_default(&f.ty)
                    } else {
                        Value::Null
                    };
                    &default
                }
            };
            let outer = self.key.replace(key);
            let completed = self.complete(f, &f.ty, value, path);
            self.key = outer;
            match completed {
                Ok(v) => {
                    out.insert(f.key.clone(), v);
                }
                Err(Propagate) => failed = true,
            }
            path.pop();
            if failed {
                // The whole object is null now; the other fields do not matter.
                return Err(Propagate);
            }
        }
        Ok(out)
    }

    /// Whether a JSON document in text is parsed for type `ty`: lists,
    /// objects and the `JSON` scalar.
    fn wants_json(&self, ty: &TypeRef) -> bool {
        match ty {
            TypeRef::NonNull(inner) => self.wants_json(inner),
            TypeRef::List(_) => true,
            TypeRef::Named(name) => {
                name == "JSON"
                    || self
                        .schema
                        .get(name)
                        .is_some_and(|t| matches!(t.kind, TypeKind::Object { .. }))
            }
        }
    }

    fn proto3_default(&self, ty: &TypeRef) -> Value {
        let TypeRef::NonNull(inner) = ty else {
            return Value::Null;
        };
        match &**inner {
            TypeRef::List(_) => Value::Array(Vec::new()),
            TypeRef::NonNull(_) => Value::Null,
            TypeRef::Named(n) => match self.schema.get(n).map(|t| &t.kind) {
                Some(TypeKind::Enum { values }) => values
                    .first()
                    .map_or(Value::Null, |v| Value::String(v.name.clone())),
                Some(TypeKind::Scalar { .. }) => match n.as_str() {
                    "Int" | "Float" => Value::from(0),
                    "String" | "ID" => Value::from(""),
                    "Boolean" => Value::Bool(false),
                    _ => Value::Null,
                },
                _ => Value::Null,
            },
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

/// Serializes an upstream value as scalar `name`; `None` when it cannot.
pub(crate) fn serialize_scalar(name: &str, value: &Value) -> Option<Value> {
    match name {
        "Int" => {
            let i = match value {
                Value::Number(n) => n.as_i64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 1e18)
                        .map(|f| f as i64)
                }),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            }?;
            i32::try_from(i).ok().map(Value::from)
        }
        "Float" => match value {
            Value::Number(n) => n.as_f64().map(Value::from),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Value::from),
            _ => None,
        },
        "String" => match value {
            Value::String(_) => Some(value.clone()),
            Value::Number(n) => Some(Value::String(n.to_string())),
            Value::Bool(b) => Some(Value::String(b.to_string())),
            _ => None,
        },
        "Boolean" => match value {
            Value::Bool(_) => Some(value.clone()),
            Value::Number(n) => n.as_f64().map(|f| Value::Bool(f != 0.0)),
            _ => None,
        },
        "ID" => match value {
            Value::String(_) => Some(value.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(Value::String(n.to_string())),
            _ => None,
        },
        other => super::scalars::serialize(other, value).unwrap_or_else(|| Some(value.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_serialize_leniently_but_within_range() {
        assert_eq!(
            serialize_scalar("Int", &Value::from("42")),
            Some(Value::from(42))
        );
        assert_eq!(serialize_scalar("Int", &Value::from("4294967296")), None);
        assert_eq!(
            serialize_scalar("Int", &Value::from(3.0)),
            Some(Value::from(3))
        );
        assert_eq!(serialize_scalar("Int", &Value::from(3.5)), None);
        assert_eq!(serialize_scalar("Int", &Value::from("x")), None);
        assert_eq!(
            serialize_scalar("Float", &Value::from("1.5")),
            Some(Value::from(1.5))
        );
        assert_eq!(
            serialize_scalar("String", &Value::from(7)),
            Some(Value::from("7"))
        );
        assert_eq!(
            serialize_scalar("Boolean", &Value::from(1)),
            Some(Value::Bool(true))
        );
        assert_eq!(
            serialize_scalar("ID", &Value::from(9)),
            Some(Value::from("9"))
        );
        assert_eq!(serialize_scalar("ID", &Value::Bool(true)), None);
        assert_eq!(
            serialize_scalar("JSON", &Value::Bool(true)),
            Some(Value::Bool(true))
        );
        assert_eq!(lower_camel("seq_no"), "seqNo");
        assert_eq!(lower_camel("_x"), "x");
    }
}
