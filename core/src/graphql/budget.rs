//! The response budget: `Limits::max_response_bytes` charged while a result
//! is built (by `core/src/graphql/shape.rs` and
//! `core/src/graphql/introspection.rs`), so a result that would be too large
//! stops growing at the limit instead of being built whole and measured
//! afterwards.
//!
//! The charge is the size of the result's JSON text, counted as it is
//! built: each object key with its quotes and colon, each leaf value as
//! written (a string's bytes and quotes, a number's digits, `true`, `null`),
//! and one byte of punctuation per value. Escapes are not counted, so the
//! true text can be slightly larger for strings full of control characters.

use super::errors::{GraphQLError, RESPONSE_TOO_LARGE};
use serde_json::Value;

/// Bytes left for one result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseBudget {
    max: usize,
    used: usize,
}

impl ResponseBudget {
    /// A budget of `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        ResponseBudget { max, used: 0 }
    }

    /// A budget of `max` bytes of which `used` are spent already.
    pub(crate) fn with_used(max: usize, used: usize) -> Self {
        ResponseBudget { max, used }
    }

    /// Bytes charged so far.
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    /// Whether the result is beyond the budget.
    pub(crate) fn exceeded(&self) -> bool {
        self.used > self.max
    }

    /// Charges an object key; returns whether the budget still holds.
    pub(crate) fn key(&mut self, key: &str) -> bool {
        self.charge(key.len() + 4)
    }

    /// Charges a value that is already built (a leaf, or a small list of
    /// leaves); returns whether the budget still holds.
    pub(crate) fn value(&mut self, v: &Value) -> bool {
        self.charge(json_len(v))
    }

    /// Charges `n` bytes; returns whether the budget still holds.
    pub(crate) fn charge(&mut self, n: usize) -> bool {
        self.used = self.used.saturating_add(n);
        !self.exceeded()
    }

    /// The error that ends an operation whose result is too large.
    pub(crate) fn error(&self) -> GraphQLError {
        GraphQLError::new(
            format!(
                "The result is larger than the limit of {} bytes (max_response_bytes); the operation was stopped. Ask for fewer fields or rows.",
                self.max
            ),
            RESPONSE_TOO_LARGE,
        )
    }
}

/// The length of `v` as JSON text (escapes not counted).
pub(crate) fn json_len(v: &Value) -> usize {
    match v {
        Value::Null => 4,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => n.to_string().len(),
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|i| json_len(i) + 1).sum::<usize>(),
        Value::Object(m) => {
            2 + m
                .iter()
                .map(|(k, v)| k.len() + 4 + json_len(v))
                .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_len_is_close_to_the_text() {
        for v in [
            json!(null),
            json!(true),
            json!(false),
            json!(12345),
            json!("héllo"),
            json!({"a": [1, 2, 3], "bb": {"c": "d"}}),
        ] {
            let text = serde_json::to_string(&v).unwrap().len();
            let est = json_len(&v);
            assert!(est >= text && est <= text + 8, "{v}: {est} vs {text}");
        }
    }

    #[test]
    fn the_budget_breaks_once_past_the_limit() {
        let mut b = ResponseBudget::new(10);
        assert!(b.charge(10));
        assert!(!b.exceeded());
        assert!(!b.charge(1));
        assert!(b.exceeded());
        assert!(b.error().message.contains("max_response_bytes"));
    }
}
