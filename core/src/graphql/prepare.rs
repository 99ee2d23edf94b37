//! `Schema::prepare`: from a client's request to an operation ready to run,
//! as a short sequence of named steps. The rules of each step are in
//! `core/src/graphql/validate.rs` (steps 1 to 6) and
//! `core/src/graphql/plan.rs` (step 7).

use super::plan::{self, PreparedOperation};
use super::schema::Schema;
use super::validate::{self, Limits};
use crate::operation::OperationRequest;
use serde_json::Value;

impl Schema {
    /// Parses and validates `request.query` against this schema, picks the
    /// operation named by `request.operation_name`, coerces the variables and
    /// returns the operation ready to execute. On failure: spec-shaped
    /// errors with `extensions.code` `GRAPHQL_PARSE_FAILED`,
    /// `GRAPHQL_VALIDATION_FAILED` or `BAD_USER_INPUT`.
    pub fn prepare(
        &self,
        request: &OperationRequest,
        limits: &Limits,
    ) -> Result<PreparedOperation, Vec<Value>> {
        validate::check_document_size(&request.query, limits)?;
        let doc = validate::parse_document(&request.query)?;
        let document = self.validate_document(&doc, limits)?;
        let chosen = document.choose_operation(request.operation_name.as_deref())?;
        chosen.check_limits(limits)?;
        let vars = self.coerce_variables(chosen.op, &request.variables)?;
        plan::plan_operation(self, &chosen, &vars)
    }
}
