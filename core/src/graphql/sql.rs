//! Named SQL parameters (`:name`) rewritten to positional `?` placeholders.
//!
//! The schema writes `SELECT ... WHERE id = :id`; MySQL prepared statements
//! take `?`. The rewrite happens once, when the schema loads; at execution
//! the values are listed in placeholder order. Values are never put into the
//! SQL text.
//!
//! A `:` starts a parameter only outside quoted strings ('...', "..."),
//! backquoted identifiers and comments (`-- `, `#`, `/* */`), and only when a
//! letter or `_` follows it; so `:=` and `::` are left alone.

/// The namespace of claim parameters: `:auth.sub` binds the `sub` claim of
/// the caller's verified token (NULL when absent), never a field argument.
pub const AUTH_PREFIX: &str = "auth";

/// The claim a parameter name binds, for `auth.<claim>` names.
pub fn claim_param(name: &str) -> Option<&str> {
    name.strip_prefix(AUTH_PREFIX)?.strip_prefix('.')
}

/// A statement with named parameters, rewritten for a prepared statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlStatement {
    /// The statement as the schema wrote it.
    pub original: String,
    /// The statement with each `:name` replaced by `?`.
    pub positional: String,
    /// The parameter name of each `?`, in order (a name may repeat).
    pub params: Vec<String>,
    /// Whether the statement returns rows (it starts with `SELECT`, `WITH`,
    /// `SHOW`, `VALUES`, `DESCRIBE`, `DESC`, `EXPLAIN` or `TABLE`).
    pub returns_rows: bool,
}

/// Why a statement could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlRewriteError(pub String);

impl std::fmt::Display for SqlRewriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SqlRewriteError {}

/// The namespace of relation parameters: `:parent.customer_id` stands for
/// the `customer_id` column of the parent rows of a nested `@sql` field
/// (`core/src/graphql/batch.rs`).
pub const PARENT_PREFIX: &str = "parent";

/// The parent column a parameter name reads, for `parent.<column>` names.
pub fn parent_param(name: &str) -> Option<&str> {
    name.strip_prefix(PARENT_PREFIX)?.strip_prefix('.')
}

/// Rewrites `:name` placeholders to `?`.
pub fn rewrite_named_params(sql: &str) -> Result<SqlStatement, SqlRewriteError> {
    rewrite_with_offsets(sql).map(|(statement, _)| statement)
}

/// [`rewrite_named_params`], plus the byte offset of each `?` in
/// `positional`, in order.
pub(crate) fn rewrite_with_offsets(
    sql: &str,
) -> Result<(SqlStatement, Vec<usize>), SqlRewriteError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut params = Vec::new();
    let mut offsets = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' | '`' => {
                // Quoted text: copy up to the matching quote; a doubled quote
                // or a backslash escape does not end it.
                out.push(c);
                i += 1;
                let mut closed = false;
                while i < chars.len() {
                    let d = chars[i];
                    out.push(d);
                    i += 1;
                    if d == '\\' && c != '`' && i < chars.len() {
                        out.push(chars[i]);
                        i += 1;
                    } else if d == c {
                        if i < chars.len() && chars[i] == c {
                            out.push(c);
                            i += 1;
                        } else {
                            closed = true;
                            break;
                        }
                    }
                }
                if !closed {
                    return Err(SqlRewriteError(format!("unterminated {c}-quoted text")));
                }
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    out.push(chars[i]);
                    i += 1;
                }
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    out.push(chars[i]);
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let start = i;
                out.push_str("/*");
                i += 2;
                loop {
                    if i >= chars.len() {
                        return Err(SqlRewriteError(format!(
                            "unterminated comment starting at character {}",
                            start + 1
                        )));
                    }
                    if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        out.push_str("*/");
                        i += 2;
                        break;
                    }
                    out.push(chars[i]);
                    i += 1;
                }
            }
            ':' if chars.get(i + 1) == Some(&':') => {
                out.push_str("::");
                i += 2;
            }
            ':' if chars
                .get(i + 1)
                .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_') =>
            {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_')
                {
                    end += 1;
                }
                // `:auth.<claim>`: a claim of the caller's verified token;
                // `:parent.<column>`: a column of the parent rows.
                if [AUTH_PREFIX, PARENT_PREFIX]
                    .iter()
                    .any(|prefix| chars[start..end].iter().copied().eq(prefix.chars()))
                    && chars.get(end) == Some(&'.')
                    && chars
                        .get(end + 1)
                        .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_')
                {
                    end += 1;
                    while end < chars.len()
                        && (chars[end].is_ascii_alphanumeric() || chars[end] == '_')
                    {
                        end += 1;
                    }
                }
                params.push(chars[start..end].iter().collect());
                offsets.push(out.len());
                out.push('?');
                i = end;
            }
            '?' => {
                return Err(SqlRewriteError(
                    "use named parameters (:name), not positional `?` placeholders".into(),
                ));
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    let first_word: String = sql
        .trim_start()
        .trim_start_matches('(')
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    let returns_rows = matches!(
        first_word.as_str(),
        "SELECT" | "WITH" | "SHOW" | "VALUES" | "DESCRIBE" | "DESC" | "EXPLAIN" | "TABLE"
    );
    if first_word.is_empty() {
        return Err(SqlRewriteError("the statement is empty".into()));
    }
    Ok((
        SqlStatement {
            original: sql.to_string(),
            positional: out,
            params,
            returns_rows,
        },
        offsets,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_params_in_order_and_skips_quotes_and_comments() {
        let s = rewrite_named_params(
            "SELECT id, ':no' AS a, `x:y` FROM t -- :c\n WHERE id = :id AND t = :text_1 OR id = :id /* :z */ AND @v := 1",
        )
        .unwrap();
        assert_eq!(
            s.positional,
            "SELECT id, ':no' AS a, `x:y` FROM t -- :c\n WHERE id = ? AND t = ? OR id = ? /* :z */ AND @v := 1"
        );
        assert_eq!(s.params, vec!["id", "text_1", "id"]);
        assert!(s.returns_rows);
    }

    #[test]
    fn claim_params_are_auth_dot_name() {
        let s = rewrite_named_params(
            "SELECT * FROM t WHERE owner = :auth.sub AND t = :auth AND x = :other.y",
        )
        .unwrap();
        assert_eq!(
            s.positional,
            "SELECT * FROM t WHERE owner = ? AND t = ? AND x = ?.y"
        );
        assert_eq!(s.params, vec!["auth.sub", "auth", "other"]);
        assert_eq!(claim_param("auth.sub"), Some("sub"));
        assert_eq!(claim_param("auth"), None);
        assert_eq!(claim_param("authx.sub"), None);
    }

    #[test]
    fn classifies_and_rejects() {
        let s = rewrite_named_params("INSERT INTO t (text) VALUES (:text)").unwrap();
        assert!(!s.returns_rows);
        assert_eq!(s.positional, "INSERT INTO t (text) VALUES (?)");
        assert!(rewrite_named_params("SELECT 'abc").is_err());
        assert!(rewrite_named_params("SELECT * FROM t WHERE id = ?").is_err());
        assert!(rewrite_named_params("  ").is_err());
        let esc = rewrite_named_params(r"SELECT 'it''s :x', 'a\':y' FROM t WHERE a = :a").unwrap();
        assert_eq!(esc.params, vec!["a"]);
    }
}
