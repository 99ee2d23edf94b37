//! Server errors as structured GraphQL failures: each MySQL/MariaDB error
//! gets a class with its own `extensions.code` (constraint conflict, lock
//! wait, deadlock, data error, anything else), and carries
//! `extensions.errno` and `extensions.sqlState`. With
//! `hide_server_messages` the client sees a generic message for the class
//! and the server's own text (table and constraint names) goes to the log
//! only. The table is in `docs/mysql.md`, "Errors".

use terminus_core::{FailureKind, UpstreamFailure};

/// The class of a server error: its failure kind and the generic message
/// shown instead of the server's text when messages are hidden.
pub(crate) fn classify(errno: u16, sql_state: Option<&str>) -> (FailureKind, &'static str) {
    let class = sql_state.map(|s| s.get(..2).unwrap_or(s));
    match errno {
        // ER_LOCK_DEADLOCK
        1213 => (
            FailureKind::Deadlock,
            "the statement was chosen as a deadlock victim and rolled back; retry it",
        ),
        // ER_LOCK_WAIT_TIMEOUT, ER_LOCK_NOWAIT
        1205 | 3572 => (
            FailureKind::LockTimeout,
            "the statement waited too long for a row lock",
        ),
        // ER_DUP_ENTRY, ER_DUP_ENTRY_WITH_KEY_NAME, ER_ROW_IS_REFERENCED(_2),
        // ER_NO_REFERENCED_ROW(_2), ER_BAD_NULL_ERROR, ER_CONSTRAINT_FAILED
        // (MariaDB CHECK), ER_CHECK_CONSTRAINT_VIOLATED (MySQL CHECK)
        1062 | 1586 | 1451 | 1452 | 1216 | 1217 | 1048 | 4025 | 3819 => (
            FailureKind::Conflict,
            "the statement conflicts with a constraint (duplicate key, foreign key, check or not null)",
        ),
        // ER_WARN_DATA_OUT_OF_RANGE, WARN_DATA_TRUNCATED, ER_TRUNCATED_WRONG_VALUE,
        // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD, ER_DATA_TOO_LONG, ER_DIVISION_BY_ZERO,
        // ER_DATA_OUT_OF_RANGE, ER_INVALID_JSON_TEXT(_IN_PARAM)
        1264 | 1265 | 1292 | 1366 | 1406 | 1365 | 1690 | 3140 | 4038 => (
            FailureKind::DataError,
            "a value does not fit its column (out of range, too long or malformed)",
        ),
        _ => match class {
            Some("23") => (
                FailureKind::Conflict,
                "the statement conflicts with a constraint (duplicate key, foreign key, check or not null)",
            ),
            Some("22") => (
                FailureKind::DataError,
                "a value does not fit its column (out of range, too long or malformed)",
            ),
            Some("40") => (
                FailureKind::Deadlock,
                "the transaction was rolled back by the server; retry it",
            ),
            _ => (FailureKind::Failed, "the database reported an error"),
        },
    }
}

/// The failure for server error `errno`/`sql_state` with `message` on
/// database `db`; `hide` replaces the message with the class's generic one
/// and logs the original.
pub(crate) fn server_failure(
    db: &str,
    errno: u16,
    sql_state: Option<&str>,
    message: &str,
    hide: bool,
) -> UpstreamFailure {
    let (kind, generic) = classify(errno, sql_state);
    let state_text = sql_state
        .map(|s| format!(", SQLSTATE {s}"))
        .unwrap_or_default();
    let text = if hide {
        tracing::warn!(
            db,
            errno,
            sql_state = sql_state.unwrap_or(""),
            server_message = message,
            "mysql statement failed (message hidden from the client: hide_server_messages)"
        );
        format!("mysql `{db}`: {generic} (error {errno}{state_text})")
    } else if errno == 0 {
        format!("mysql `{db}`: {message}")
    } else {
        format!("mysql `{db}`: {message} (error {errno}{state_text})")
    };
    let mut failure = UpstreamFailure::new(kind, text);
    if errno != 0 {
        failure = failure.with_extension("errno", serde_json::Value::from(errno));
    }
    if let Some(state) = sql_state {
        failure = failure.with_extension("sqlState", serde_json::Value::from(state));
    }
    failure
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_errno_and_sqlstate() {
        assert_eq!(classify(1062, Some("23000")).0, FailureKind::Conflict);
        assert_eq!(classify(1452, Some("23000")).0, FailureKind::Conflict);
        assert_eq!(classify(1205, Some("HY000")).0, FailureKind::LockTimeout);
        assert_eq!(classify(1213, Some("40001")).0, FailureKind::Deadlock);
        assert_eq!(classify(1264, Some("22003")).0, FailureKind::DataError);
        assert_eq!(classify(1366, Some("HY000")).0, FailureKind::DataError);
        assert_eq!(classify(9999, Some("22012")).0, FailureKind::DataError);
        assert_eq!(classify(1146, Some("42S02")).0, FailureKind::Failed);
        assert_eq!(classify(0, None).0, FailureKind::Failed);
    }

    #[test]
    fn hidden_messages_keep_codes_but_not_names() {
        let f = server_failure(
            "main",
            1062,
            Some("23000"),
            "Duplicate entry 'a' for key 'secret_idx'",
            true,
        );
        assert_eq!(f.kind.code(), "UPSTREAM_CONFLICT");
        assert!(!f.message.contains("secret_idx"), "{}", f.message);
        assert_eq!(f.extensions["errno"], 1062);
        assert_eq!(f.extensions["sqlState"], "23000");
        let shown = server_failure("main", 1062, Some("23000"), "Duplicate entry", false);
        assert!(shown.message.contains("Duplicate entry"));
    }
}
