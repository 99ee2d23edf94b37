//! The row-count rule (step 9 of `Schema::prepare` in
//! `core/src/graphql/prepare.rs`): a field argument that an `@sql` or
//! `@live` statement binds to `LIMIT` or `OFFSET` must be an integer from 0
//! to `Limits::max_sql_row_count`; anything else (a negative number, which
//! MySQL would refuse or a driver would wrap; an absurd one; null) is
//! refused with `BAD_USER_INPUT` before any statement runs.
//!
//! Which parameters the rule covers is read from the statement itself, not
//! declared per field: a `:name` that directly follows `LIMIT` or `OFFSET`,
//! and both parameters of MySQL's `LIMIT :offset, :count`. Quoted text and
//! comments are skipped, as in `core/src/graphql/sql.rs`. Claim parameters
//! (`:auth.<claim>`) come from the verified token, not the client, and are
//! not checked. Documented in docs/security.md.

use super::errors::{self, GraphQLError, BAD_USER_INPUT};
use super::plan::PlannedField;
use super::schema::{Resolver, Schema};
use super::sql::{claim_param, SqlStatement};
use super::validate::Limits;
use serde_json::Value;

/// The indexes (into `statement.params`) of the parameters bound to
/// `LIMIT` or `OFFSET`, with the keyword.
pub(crate) fn row_count_params(statement: &SqlStatement) -> Vec<(usize, &'static str)> {
    let chars: Vec<char> = statement.positional.chars().collect();
    let mut out = Vec::new();
    // The last two significant tokens before the current position:
    // a keyword (upper-cased word), "?", "," or another symbol.
    let mut prev: [Option<String>; 2] = [None, None];
    let mut placeholder = 0usize;
    let push = |prev: &mut [Option<String>; 2], tok: String| {
        prev[0] = prev[1].take();
        prev[1] = Some(tok);
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' | '`' => {
                i += 1;
                while i < chars.len() {
                    if chars[i] == '\\' && c != '`' {
                        i += 2;
                        continue;
                    }
                    if chars[i] == c {
                        if chars.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
                push(&mut prev, "quoted".into());
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
            }
            '?' => {
                let keyword = match (&prev[0], &prev[1]) {
                    (_, Some(k)) if k == "LIMIT" => Some("LIMIT"),
                    (_, Some(k)) if k == "OFFSET" => Some("OFFSET"),
                    // `LIMIT ?, ?`: the second is the count.
                    (Some(q), Some(comma)) if q == "?LIMIT" && comma == "," => Some("LIMIT"),
                    _ => None,
                };
                if let Some(k) = keyword {
                    out.push((placeholder, k));
                }
                placeholder += 1;
                // Remember a placeholder that followed LIMIT, for `LIMIT ?, ?`.
                let tok = if keyword == Some("LIMIT") && prev[1].as_deref() == Some("LIMIT") {
                    "?LIMIT"
                } else {
                    "?"
                };
                push(&mut prev, tok.into());
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                push(&mut prev, word.to_ascii_uppercase());
            }
            c if c.is_whitespace() => i += 1,
            c => {
                push(&mut prev, c.to_string());
                i += 1;
            }
        }
    }
    out
}

fn walk(schema: &Schema, fields: &[PlannedField], max: usize, errors: &mut Vec<GraphQLError>) {
    for f in fields {
        let def = schema.field(&f.parent, &f.name);
        let declared = |name: &str| def.is_some_and(|d| d.args.iter().any(|a| a.name == name));
        match def.and_then(|d| d.resolver.as_ref()) {
            Some(Resolver::Sql {
                statement,
                reselect,
                ..
            }) => {
                for s in std::iter::once(statement).chain(reselect.as_ref()) {
                    check_declared(s, f, max, &declared, errors);
                }
            }
            Some(Resolver::Live { statement, .. }) => {
                check_declared(statement, f, max, &declared, errors)
            }
            _ => {}
        }
        walk(schema, &f.selection, max, errors);
    }
}

fn check_declared(
    statement: &SqlStatement,
    field: &PlannedField,
    max: usize,
    declared: &dyn Fn(&str) -> bool,
    errors: &mut Vec<GraphQLError>,
) {
    for (index, keyword) in row_count_params(statement) {
        let Some(name) = statement.params.get(index) else {
            continue;
        };
        // Claims come from the verified token, and a parameter that is not
        // an argument (`:lastInsertId` of a reselect) from the database.
        if claim_param(name).is_some() || !declared(name) {
            continue;
        }
        let value = field.args.get(name).unwrap_or(&Value::Null);
        if value.as_u64().is_none_or(|n| n > max as u64) {
            errors.push(
                GraphQLError::new(
                    format!(
                        "Argument \"{name}\" of field \"{}.{}\" is bound to SQL {keyword}: it must be an integer from 0 to {max} (max_sql_row_count), not {value}.",
                        field.parent, field.name
                    ),
                    BAD_USER_INPUT,
                )
                .at(field.pos),
            );
        }
    }
}

/// Step 9 of `Schema::prepare`: the row-count rule over every field of the
/// planned operation.
pub(crate) fn check_row_counts(
    schema: &Schema,
    fields: &[PlannedField],
    limits: &Limits,
) -> Result<(), Vec<Value>> {
    let mut errors = Vec::new();
    walk(schema, fields, limits.max_sql_row_count, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors::to_values(&errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::sql::rewrite_named_params;

    fn bound(sql: &str) -> Vec<(String, &'static str)> {
        let s = rewrite_named_params(sql).unwrap();
        row_count_params(&s)
            .into_iter()
            .map(|(i, k)| (s.params[i].clone(), k))
            .collect()
    }

    #[test]
    fn parameters_after_limit_and_offset_are_found_in_the_statement() {
        assert_eq!(
            bound("SELECT * FROM t WHERE a = :a ORDER BY id LIMIT :limit OFFSET :skip"),
            vec![("limit".into(), "LIMIT"), ("skip".into(), "OFFSET")]
        );
        assert_eq!(
            bound("select * from t limit :from, :n"),
            vec![("from".into(), "LIMIT"), ("n".into(), "LIMIT")]
        );
        assert_eq!(
            bound("SELECT 'LIMIT :x' AS s, a FROM t /* LIMIT :y */ WHERE b = :b -- LIMIT :z\n LIMIT 5"),
            vec![]
        );
        assert_eq!(
            bound("SELECT * FROM t WHERE a IN (:a, :b) LIMIT 10"),
            vec![]
        );
        assert_eq!(
            bound("SELECT * FROM t WHERE limit_col = :a LIMIT :n"),
            vec![("n".into(), "LIMIT")]
        );
    }
}
