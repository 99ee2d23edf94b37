//! The start-up check of SQL fields against the columns their statements
//! return: a field that maps to no column is an error when the gateway
//! starts, not a silent null. The host prepares each statement of
//! [`Schema::column_checks`] (preparing does not run it) and hands the
//! column names to [`Schema::check_columns`].

use super::batch::{RelationSql, KEY_COLUMN};
use super::names::{lower_camel, snake_case};
use super::schema::{Resolver, Schema, TypeKind};
use serde_json::{Map, Value};

/// One statement whose columns must cover an object type's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnCheck {
    /// The database's configured name.
    pub db: String,
    /// The statement to prepare, with `?` placeholders.
    pub statement: String,
    /// The field it answers, `Query.orders`, for messages.
    pub field: String,
    /// The object type whose fields read its columns.
    pub type_name: String,
}

/// Whether a field reads `column` (by `@from`, its name, or its name in
/// lowerCamelCase or snake_case).
fn reads(columns: &[String], name: &str, from: Option<&str>) -> bool {
    let has = |c: &str| columns.iter().any(|k| k == c);
    match from {
        Some(key) => has(key) || has(&lower_camel(key)),
        None => has(name) || has(&lower_camel(name)) || has(&snake_case(name)),
    }
}

impl Schema {
    /// The SQL statements (root `@sql`/`@live` fields returning rows, their
    /// `reselect`, and relations) whose result is an object type, with that
    /// type.
    pub fn column_checks(&self) -> Vec<ColumnCheck> {
        let mut out = Vec::new();
        for t in &self.inner.types {
            let TypeKind::Object { fields } = &t.kind else {
                continue;
            };
            if t.name.starts_with("__") {
                continue;
            }
            for f in fields {
                let named = f.ty.named();
                let is_object = self
                    .get(named)
                    .is_some_and(|n| matches!(n.kind, TypeKind::Object { .. }));
                if !is_object {
                    continue;
                }
                let (db, statement) = match &f.resolver {
                    Some(Resolver::Sql {
                        db,
                        statement,
                        reselect,
                    }) => {
                        let relation = statement
                            .params
                            .iter()
                            .any(|p| super::sql::parent_param(p).is_some());
                        if relation {
                            let Ok(r) = RelationSql::parse(&statement.original) else {
                                continue;
                            };
                            (db, r.statement(&[Value::Null], &Map::new()).0)
                        } else if let Some(r) = reselect {
                            (db, r.positional.clone())
                        } else if statement.returns_rows {
                            (db, statement.positional.clone())
                        } else {
                            continue;
                        }
                    }
                    Some(Resolver::Live { db, statement, .. }) => {
                        (db, statement.positional.clone())
                    }
                    _ => continue,
                };
                out.push(ColumnCheck {
                    db: db.clone(),
                    statement,
                    field: format!("{}.{}", t.name, f.name),
                    type_name: named.to_string(),
                });
            }
        }
        out
    }

    /// Checks that every field of the check's type reads one of `columns`
    /// (relations are fed by their own statements, but the parent column
    /// they key on must be there). The error names the field, the
    /// statement's field and the columns.
    pub fn check_columns(&self, check: &ColumnCheck, columns: &[String]) -> Result<(), String> {
        let Some(TypeKind::Object { fields }) = self.get(&check.type_name).map(|t| &t.kind) else {
            return Ok(());
        };
        let listed = || {
            columns
                .iter()
                .filter(|c| *c != KEY_COLUMN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        };
        for f in fields {
            match &f.resolver {
                Some(Resolver::Sql { statement, .. }) => {
                    let Ok(r) = RelationSql::parse(&statement.original) else {
                        continue;
                    };
                    if !reads(columns, &r.parent_column, None) {
                        return Err(format!(
                            "relation {}.{} keys on :parent.{}, but the statement of {} returns no such column (columns: {})",
                            check.type_name,
                            f.name,
                            r.parent_column,
                            check.field,
                            listed()
                        ));
                    }
                }
                Some(_) => {}
                None => {
                    if !reads(columns, &f.name, f.source.as_deref()) {
                        let key = f.source.clone().unwrap_or_else(|| {
                            let snake = snake_case(&f.name);
                            if snake == f.name {
                                f.name.clone()
                            } else {
                                format!("{} or {snake}", f.name)
                            }
                        });
                        return Err(format!(
                            "field {}.{} reads column {key}, but the statement of {} returns no such column (columns: {}); alias it in the SELECT or rename with @from",
                            check.type_name,
                            f.name,
                            check.field,
                            listed()
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
