//! Relations: nested `@sql` fields resolved one statement per level for the
//! whole parent set, stitched back like a DataLoader.
//!
//! A field of a nested object type may carry its own `@sql` whose statement
//! reads one column of the parent row through `:parent.<column>`, compared
//! with `=` or `IN (...)`:
//!
//! ```graphql
//! type Order {
//!   id: ID!
//!   customer: Customer @sql(db: "shop", query: "SELECT * FROM customers WHERE id = :parent.customer_id")
//!   items: [Item!]! @sql(db: "shop", query: "SELECT * FROM order_items WHERE order_id = :parent.id ORDER BY id")
//! }
//! ```
//!
//! When the schema loads, [`RelationSql::parse`] turns `<key> = :parent.col`
//! (or `<key> IN (:parent.col)`) into `<key> IN (?, ?, ...)` and adds
//! `<key> AS __terminus_key` in front of the select list. At execution the
//! distinct values of `col` over every parent row at that level are bound to
//! the `IN` list (never spliced into SQL text): one statement per level, not
//! one per parent. The answer's rows are grouped by `__terminus_key` and each
//! parent gets its own: a list field the matching rows, an object field the
//! first. The bound key count is rounded up to a power of two (the last key
//! repeated) so the statement text, and the server's prepared statement,
//! repeats; at most [`MAX_KEYS_PER_STATEMENT`] keys go in one statement.
//!
//! `core/src/graphql/execution.rs` drives it: [`Pending`] collects the jobs
//! of one root field's value level by level; identical statements (same
//! text, same bound values) of one operation run once and share their rows.

use super::plan::PlannedField;
use super::schema::{Resolver, Schema, TypeKind, TypeRef};
use super::sql::{parent_param, rewrite_with_offsets, SqlStatement};
use crate::upstream::UpstreamCall;
use serde_json::{Map, Value};

/// The column the planner adds to a relation's select list to stitch rows
/// back to their parents.
pub const KEY_COLUMN: &str = "__terminus_key";

/// The most parent keys bound into one relation statement; a larger parent
/// set runs one statement per this many keys.
pub const MAX_KEYS_PER_STATEMENT: usize = 1024;

/// Where a stitched relation value is kept inside its parent row, for the
/// response key `key` (shaping reads it from there).
pub(crate) fn stitched_key(key: &str) -> String {
    format!("\u{0}rel:{key}")
}

/// A relation statement rewritten for batching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationSql {
    /// The parent column whose values are the keys (`customer_id` of
    /// `:parent.customer_id`).
    pub parent_column: String,
    /// The positional statement before the `IN` list's placeholders,
    /// with `<key> AS __terminus_key,` already added to the select list.
    head: String,
    /// The statement after the `IN` list.
    tail: String,
    /// The parameter names of the placeholders before the `IN` list.
    params_before: Vec<String>,
    /// The parameter names of the placeholders after it.
    params_after: Vec<String>,
}

impl RelationSql {
    /// Rewrites `statement` (the nested field's `@sql(query:)`); the error
    /// says what does not fit the relation form.
    pub fn parse(query: &str) -> Result<RelationSql, String> {
        let (statement, offsets) = rewrite_with_offsets(query).map_err(|e| e.0)?;
        if !statement.returns_rows {
            return Err("a relation's statement must be a SELECT".into());
        }
        let parents: Vec<usize> = statement
            .params
            .iter()
            .enumerate()
            .filter(|(_, p)| parent_param(p).is_some())
            .map(|(i, _)| i)
            .collect();
        let [at] = parents[..] else {
            return Err(format!(
                "a relation's statement reads exactly one parent column once, as `<column> = :parent.<column>` or `<column> IN (:parent.<column>)` ({} found)",
                parents.len()
            ));
        };
        let parent_column = parent_param(&statement.params[at])
            .expect("filtered above")
            .to_string();
        let text = statement.positional.as_str();
        let q = offsets[at];
        let before = text[..q].trim_end();
        let after = &text[q + 1..];
        // `<key> = ?` or `<key> IN (?)`.
        let (operand_end, rest_start) = if let Some(eq) = before.strip_suffix('=') {
            if eq.ends_with(['<', '>', '!', ':']) {
                return Err("the parent column must be compared with `=` or `IN`".into());
            }
            (eq.trim_end().len(), q + 1)
        } else if let Some(open) = before.strip_suffix('(') {
            let open = open.trim_end();
            let close = after
                .trim_start()
                .strip_prefix(')')
                .ok_or("`IN (:parent.<column>)` must hold the parent column alone")?;
            let keyword_at = open.len().checked_sub(2).filter(|&k| {
                open[k..].eq_ignore_ascii_case("in")
                    && open[..k].ends_with(|c: char| c.is_whitespace() || c == ')' || c == '`')
            });
            let Some(k) = keyword_at else {
                return Err("the parent column must be compared with `=` or `IN`".into());
            };
            (open[..k].trim_end().len(), text.len() - close.len())
        } else {
            return Err("the parent column must be compared with `=` or `IN`".into());
        };
        let operand_text = &text[..operand_end];
        let key_start = operand_text
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '`'))
            .map_or(0, |i| i + 1);
        let key = &operand_text[key_start..];
        if key.is_empty() || key.starts_with('.') || key.ends_with('.') {
            return Err(
                "the left side of `= :parent.<column>` must be a column (`id`, `t.customer_id`)"
                    .into(),
            );
        }
        // After `SELECT` (and `DISTINCT` / `ALL` / `DISTINCTROW`).
        let lead = text.len() - text.trim_start().len();
        let first_word: String = text[lead..]
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        if !first_word.eq_ignore_ascii_case("select") {
            return Err("a relation's statement starts with SELECT".into());
        }
        let mut insert_at = lead + first_word.len();
        let next = &text[insert_at..];
        let next_word: String = next
            .trim_start()
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        if ["distinct", "all", "distinctrow"]
            .iter()
            .any(|w| next_word.eq_ignore_ascii_case(w))
        {
            insert_at += next.len() - next.trim_start().len() + next_word.len();
        }
        let head = format!(
            "{} {key} AS {KEY_COLUMN},{}{key} IN (",
            &text[..insert_at],
            &text[insert_at..key_start],
        );
        let tail = format!("){}", &text[rest_start..]);
        Ok(RelationSql {
            parent_column,
            head,
            tail,
            params_before: statement.params[..at].to_vec(),
            params_after: statement.params[at + 1..].to_vec(),
        })
    }

    /// `args` plus the values of the statement's `:auth.<claim>`
    /// parameters from `claims` (null when absent).
    pub(crate) fn with_claims(
        &self,
        args: &Map<String, Value>,
        claims: &Map<String, Value>,
    ) -> Map<String, Value> {
        let mut bound = args.clone();
        for p in self.params_before.iter().chain(&self.params_after) {
            if let Some(claim) = super::sql::claim_param(p) {
                bound.insert(p.clone(), claims.get(claim).cloned().unwrap_or(Value::Null));
            }
        }
        bound
    }

    /// The statement for `keys` (already distinct, at most
    /// [`MAX_KEYS_PER_STATEMENT`]) and its parameters; `args` binds the
    /// field's own arguments.
    pub fn statement(&self, keys: &[Value], args: &Map<String, Value>) -> (String, Vec<Value>) {
        let bound = keys.len().next_power_of_two();
        let mut sql = self.head.clone();
        for i in 0..bound {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
        }
        sql.push_str(&self.tail);
        let arg = |p: &String| args.get(p).cloned().unwrap_or(Value::Null);
        let mut params: Vec<Value> = self.params_before.iter().map(arg).collect();
        params.extend(keys.iter().cloned());
        let last = keys.last().cloned().unwrap_or(Value::Null);
        params.extend(std::iter::repeat_n(last, bound - keys.len()));
        params.extend(self.params_after.iter().map(arg));
        (sql, params)
    }
}

/// Words that make a statement's rows depend on the whole result, so one
/// statement for many parameter sets would not give each set its own rows.
const NOT_MULTIPLEXED: [&str; 13] = [
    "LIMIT", "OFFSET", "GROUP", "HAVING", "DISTINCT", "UNION", "OVER", "WINDOW", "COUNT", "SUM",
    "AVG", "MIN", "MAX",
];

/// `text` with quoted strings, backquoted names and comments blanked
/// (same length), so `?` and keywords can be found outside them.
fn unquoted(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let end = match c {
            b'\'' | b'"' | b'`' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != c {
                    j += if b[j] == b'\\' && c != b'`' { 2 } else { 1 };
                }
                j + 1
            }
            b'#' => b[i..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |p| i + p),
            b'-' if b.get(i + 1) == Some(&b'-') => b[i..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |p| i + p),
            b'/' if b.get(i + 1) == Some(&b'*') => {
                text[i + 2..].find("*/").map_or(b.len(), |p| i + p + 4)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        let end = end.min(b.len());
        for x in &mut out[i..end] {
            if x.is_ascii() {
                *x = b' ';
            }
        }
        i = end;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The multiplexed form of a `@live` statement (positional, as in
/// `UpstreamCall::LiveSql`): when its one parameter is compared with `=`
/// or `IN (...)` and its rows do not depend on the whole result (no
/// `LIMIT`, grouping, aggregates, `DISTINCT`, `UNION`, windows), one
/// statement can answer many parameter sets, each set's rows told apart by
/// [`KEY_COLUMN`]. `None`: poll it per parameter set.
pub fn live_cohort(positional: &str) -> Option<RelationSql> {
    let blank = unquoted(positional);
    let refused = blank
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_ascii_uppercase)
        .any(|w| {
            NOT_MULTIPLEXED.contains(&w.as_str()) || w.ends_with("AGG") || w == "GROUP_CONCAT"
        });
    if refused {
        return None;
    }
    let marks: Vec<usize> = blank.match_indices('?').map(|(i, _)| i).collect();
    let [at] = marks[..] else {
        return None;
    };
    let named = format!("{}:parent.__k{}", &positional[..at], &positional[at + 1..]);
    RelationSql::parse(&named).ok()
}

/// Whether field `name` of `type_name` is a relation (a nested `@sql`).
pub(crate) fn is_relation(schema: &Schema, type_name: &str, name: &str) -> bool {
    schema
        .field(type_name, name)
        .is_some_and(|d| matches!(d.resolver, Some(Resolver::Sql { .. })))
}

/// The text a key compares by: `7` and `"7"` are the same key (a column
/// read as a number in one table and as text in another).
fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Reads the parent row's column: its name, or its snake_case or
/// lowerCamelCase spelling.
fn parent_value<'v>(row: &'v Map<String, Value>, column: &str) -> Option<&'v Value> {
    row.get(column)
        .or_else(|| row.get(&super::names::lower_camel(column)))
        .or_else(|| row.get(&super::names::snake_case(column)))
}

/// Calls `f` on every object found by following `steps` from `value`
/// (arrays are walked through).
fn for_each_parent(
    value: &mut Value,
    steps: &[String],
    f: &mut dyn FnMut(&mut Map<String, Value>),
) {
    match value {
        Value::Array(items) => {
            for item in items {
                for_each_parent(item, steps, f);
            }
        }
        Value::Object(map) => match steps.split_first() {
            None => f(map),
            Some((step, rest)) => {
                if let Some(next) = map.get_mut(step) {
                    for_each_parent(next, rest, f);
                }
            }
        },
        _ => {}
    }
}

/// One relation field to resolve for the parents at `steps`.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// Keys from the root value to the parent objects.
    pub steps: Vec<String>,
    /// The relation field (its selection holds the next level).
    pub field: PlannedField,
    /// The object type of the parents.
    pub parent_type: String,
}

/// The calls of one job: its statements and the rows that have come back.
#[derive(Debug)]
pub(crate) struct JobCalls {
    pub job: Job,
    pub waiting: usize,
    pub rows: Vec<Value>,
}

/// The relation jobs below `selection` (fields of `type_name`) for parents
/// at `steps`; plain nested objects are walked through.
pub(crate) fn jobs_below(
    schema: &Schema,
    type_name: &str,
    selection: &[PlannedField],
    steps: &[String],
    out: &mut Vec<Job>,
) {
    for f in selection {
        if is_relation(schema, type_name, &f.name) {
            out.push(Job {
                steps: steps.to_vec(),
                field: f.clone(),
                parent_type: type_name.to_string(),
            });
            continue;
        }
        let is_object = schema
            .get(f.ty.named())
            .is_some_and(|t| matches!(t.kind, TypeKind::Object { .. }));
        if is_object && !f.selection.is_empty() {
            let from = schema
                .field(type_name, &f.name)
                .and_then(|d| d.source.clone())
                .unwrap_or_else(|| f.name.clone());
            let mut next = steps.to_vec();
            next.push(from);
            jobs_below(schema, f.ty.named(), &f.selection, &next, out);
        }
    }
}

/// The statements job `job` needs over `value` (the root field's source
/// value): one per [`MAX_KEYS_PER_STATEMENT`] distinct keys; none when no
/// parent has a key.
pub(crate) fn calls_for(
    schema: &Schema,
    job: &Job,
    value: &mut Value,
    claims: &Map<String, Value>,
) -> Result<Vec<UpstreamCall>, String> {
    let Some(Resolver::Sql { db, statement, .. }) = schema
        .field(&job.parent_type, &job.field.name)
        .and_then(|d| d.resolver.clone())
    else {
        return Ok(Vec::new());
    };
    let relation = relation_of(&statement)?;
    let mut keys: Vec<Value> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for_each_parent(value, &job.steps, &mut |row| {
        if let Some(v) = parent_value(row, &relation.parent_column) {
            if let Some(text) = key_text(v) {
                if seen.insert(text) {
                    keys.push(v.clone());
                }
            }
        }
    });
    let args = relation.with_claims(&job.field.args, claims);
    Ok(keys
        .chunks(MAX_KEYS_PER_STATEMENT)
        .map(|chunk| {
            let (sql, params) = relation.statement(chunk, &args);
            UpstreamCall::Sql {
                db: db.clone(),
                statement: sql,
                params,
                returns_rows: true,
            }
        })
        .collect())
}

fn relation_of(statement: &SqlStatement) -> Result<RelationSql, String> {
    RelationSql::parse(&statement.original)
}

/// Puts the rows of `job` into each parent: the matching rows for a list
/// field, the first for a single one (null when none), the first
/// non-key column for a leaf.
pub(crate) fn stitch(schema: &Schema, job: &Job, value: &mut Value, rows: &[Value]) {
    let Some(Resolver::Sql { statement, .. }) = schema
        .field(&job.parent_type, &job.field.name)
        .and_then(|d| d.resolver.clone())
    else {
        return;
    };
    let Ok(relation) = relation_of(&statement) else {
        return;
    };
    let is_list = matches!(job.field.ty.nullable(), TypeRef::List(_));
    let is_leaf = schema
        .get(job.field.ty.named())
        .is_some_and(|t| t.is_leaf());
    let mut groups: std::collections::HashMap<String, Vec<Value>> = Default::default();
    for row in rows {
        let Value::Object(cols) = row else { continue };
        let Some(k) = cols.get(KEY_COLUMN).and_then(key_text) else {
            continue;
        };
        let item = if is_leaf {
            cols.iter()
                .find(|(name, _)| *name != KEY_COLUMN)
                .map(|(_, v)| v.clone())
                .unwrap_or(Value::Null)
        } else {
            row.clone()
        };
        groups.entry(k).or_default().push(item);
    }
    let slot = stitched_key(&job.field.key);
    for_each_parent(value, &job.steps, &mut |row| {
        let mine = parent_value(row, &relation.parent_column)
            .and_then(key_text)
            .and_then(|k| groups.get(&k));
        let v = match (mine, is_list) {
            (Some(items), true) => Value::Array(items.clone()),
            (None, true) => Value::Array(Vec::new()),
            (Some(items), false) => items.first().cloned().unwrap_or(Value::Null),
            (None, false) => Value::Null,
        };
        row.insert(slot.clone(), v);
    });
}

/// A validation error when a subscription selects a relation: relations
/// are resolved for queries and mutations only.
pub(crate) fn subscription_relation_error(
    op: &super::plan::PreparedOperation,
) -> Option<super::errors::GraphQLError> {
    for f in &op.fields {
        let mut jobs = Vec::new();
        jobs_below(&op.schema, f.ty.named(), &f.selection, &[], &mut jobs);
        if let Some(job) = jobs.first() {
            return Some(super::errors::GraphQLError::validation(
                format!(
                    "{}.{} is a relation (a nested @sql field); relations are resolved in queries and mutations, not in subscriptions",
                    job.parent_type, job.field.name
                ),
                job.field.pos,
            ));
        }
    }
    None
}

/// The jobs of the level below a stitched job.
pub(crate) fn next_level(schema: &Schema, job: &Job) -> Vec<Job> {
    let mut steps = job.steps.clone();
    steps.push(stitched_key(&job.field.key));
    let mut out = Vec::new();
    jobs_below(
        schema,
        job.field.ty.named(),
        &job.field.selection,
        &steps,
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equality_and_in_become_a_bound_in_list_with_a_key_column() {
        let r = RelationSql::parse(
            "SELECT c.id, c.name FROM customers c WHERE c.id = :parent.customer_id AND c.active = :active",
        )
        .unwrap();
        assert_eq!(r.parent_column, "customer_id");
        let mut args = Map::new();
        args.insert("active".into(), json!(1));
        let (sql, params) = r.statement(&[json!(7), json!(8), json!(9)], &args);
        assert_eq!(
            sql,
            "SELECT c.id AS __terminus_key, c.id, c.name FROM customers c WHERE c.id IN (?, ?, ?, ?) AND c.active = ?"
        );
        assert_eq!(
            params,
            vec![json!(7), json!(8), json!(9), json!(9), json!(1)]
        );

        let r = RelationSql::parse(
            "select distinct order_id, sku from items where `order_id` in ( :parent.id ) order by sku",
        )
        .unwrap();
        let (sql, params) = r.statement(&[json!("a")], &Map::new());
        assert_eq!(
            sql,
            "select distinct `order_id` AS __terminus_key, order_id, sku from items where `order_id` IN (?) order by sku"
        );
        assert_eq!(params, vec![json!("a")]);
    }

    #[test]
    fn live_statements_multiplex_only_when_rows_are_per_parameter() {
        let c =
            live_cohort("SELECT id, status FROM orders WHERE customer_id = ? ORDER BY id").unwrap();
        let (sql, params) = c.statement(&[json!(1), json!(2), json!(3)], &Map::new());
        assert_eq!(
            sql,
            "SELECT customer_id AS __terminus_key, id, status FROM orders WHERE customer_id IN (?, ?, ?, ?) ORDER BY id"
        );
        assert_eq!(params.len(), 4);
        assert!(live_cohort("SELECT id FROM t WHERE a = '?' AND b = ?").is_some());
        for single in [
            "SELECT id FROM t WHERE c = ? LIMIT 5",
            "SELECT COUNT(*) FROM t WHERE c = ?",
            "SELECT id FROM t WHERE c = ? AND d = ?",
            "SELECT id FROM t",
            "SELECT DISTINCT id FROM t WHERE c = ?",
            "SELECT id FROM t WHERE c > ?",
            "SELECT JSON_ARRAYAGG(id) FROM t WHERE c = ?",
        ] {
            assert!(live_cohort(single).is_none(), "{single}");
        }
        assert!(live_cohort("SELECT id, 'limit' AS x FROM t WHERE c = ?").is_some());
    }

    #[test]
    fn other_forms_are_refused() {
        for bad in [
            "SELECT * FROM t WHERE id > :parent.id",
            "SELECT * FROM t WHERE id = :parent.id OR x = :parent.y",
            "SELECT * FROM t WHERE id IN (:parent.id, 3)",
            "SELECT * FROM t WHERE id = :id",
            "DELETE FROM t WHERE id = :parent.id",
            "SELECT * FROM t WHERE f(:parent.id)",
        ] {
            assert!(RelationSql::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn walking_parents_through_lists_and_objects() {
        let mut v = json!([{"a": {"id": 1}}, {"a": [{"id": 2}, {"id": 3}]}, {"b": 1}]);
        let mut seen = Vec::new();
        for_each_parent(&mut v, &["a".to_string()], &mut |m| {
            seen.push(m["id"].clone())
        });
        assert_eq!(seen, vec![json!(1), json!(2), json!(3)]);
        assert_eq!(key_text(&json!(7)), key_text(&json!("7")));
    }
}
