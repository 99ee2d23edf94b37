//! The start-up check of the schema's SQL fields against the columns of
//! their statements (`core/src/graphql/columns.rs`): each statement is
//! prepared, not run, on its pool; a field that maps to no column, or a
//! statement the server refuses, stops start-up with the schema file's
//! name. A database that cannot be reached at start-up is not checked
//! (logged), so the gateway still starts while it is down.

use crate::upstreams::Upstreams;
use std::path::Path;
use terminus_core::graphql::Schema;
use terminus_core::FailureKind;

/// Checks every SQL field of `schema` that returns an object type.
pub async fn check(schema: &Schema, upstreams: &Upstreams, file: &Path) -> Result<(), String> {
    for check in schema.column_checks() {
        let Some(pool) = upstreams.mysql(&check.db) else {
            continue;
        };
        match pool.columns(&check.statement).await {
            Ok(columns) => schema
                .check_columns(&check, &columns)
                .map_err(|e| format!("{}: {e}", file.display()))?,
            Err(failure)
                if matches!(
                    failure.kind,
                    FailureKind::Unavailable | FailureKind::Busy | FailureKind::Timeout
                ) =>
            {
                tracing::warn!(field = %check.field, %failure, "cannot check the field's columns at start-up");
            }
            Err(failure) => {
                return Err(format!(
                    "{}: field {}: the statement does not prepare: {}",
                    file.display(),
                    check.field,
                    failure.message
                ))
            }
        }
    }
    Ok(())
}
