//! Claims to gRPC metadata (issue 14): the `[auth.jwt] claims_metadata`
//! table names the claims of a verified token that go, as request headers,
//! on every gRPC call of the caller's operations (`sub = "x-user-id"`).
//!
//! This is a small stand-in until the general metadata forwarding of
//! issue 18 is on main; it should then become one source of that
//! mechanism.

use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::str::FromStr;

/// Headers added to every gRPC call of one operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcMetadata(pub Vec<(HeaderName, HeaderValue)>);

/// Checks a `claims_metadata` table: header names must be valid lowercase
/// gRPC metadata keys that HTTP/2 and gRPC do not reserve.
pub fn check(table: &BTreeMap<String, String>) -> Result<Vec<(String, HeaderName)>, String> {
    table
        .iter()
        .map(|(claim, header)| {
            let reserved = header.starts_with("grpc-")
                || header.starts_with(':')
                || header.ends_with("-bin")
                || matches!(
                    header.as_str(),
                    "content-type" | "te" | "user-agent" | "host" | "connection"
                );
            let valid = HeaderName::from_str(header)
                .ok()
                .filter(|h| h.as_str() == header && !reserved)
                .ok_or_else(|| {
                    format!("auth.jwt.claims_metadata: {header:?} (for claim {claim:?}) is not a usable gRPC metadata key (lowercase; not grpc-*, *-bin, content-type, te, user-agent, host)")
                })?;
            Ok((claim.clone(), valid))
        })
        .collect()
}

/// The metadata for `claims`: each configured claim that is present, as
/// text (strings as they are, other JSON values as JSON). A value that is
/// not a valid header value is left out.
pub fn for_claims(table: &[(String, HeaderName)], claims: &Map<String, Value>) -> GrpcMetadata {
    GrpcMetadata(
        table
            .iter()
            .filter_map(|(claim, header)| {
                let text = match claims.get(claim)? {
                    Value::String(s) => s.clone(),
                    Value::Null => return None,
                    other => other.to_string(),
                };
                HeaderValue::from_str(&text)
                    .ok()
                    .map(|value| (header.clone(), value))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configured_claims_become_headers() {
        let table = BTreeMap::from([
            ("sub".to_owned(), "x-user-id".to_owned()),
            ("org".to_owned(), "x-org".to_owned()),
            ("gone".to_owned(), "x-gone".to_owned()),
        ]);
        let parsed = check(&table).unwrap();
        let claims = json!({"sub": "alice", "org": 7, "other": "no"});
        let metadata = for_claims(&parsed, claims.as_object().unwrap());
        let pairs: Vec<(String, String)> = metadata
            .0
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("x-org".into(), "7".into()),
                ("x-user-id".into(), "alice".into())
            ]
        );
        for bad in ["grpc-status", "X-Upper", "content-type", "a b", "x-bin"] {
            let table = BTreeMap::from([("sub".to_owned(), bad.to_owned())]);
            assert!(check(&table).is_err(), "{bad} accepted");
        }
    }
}
