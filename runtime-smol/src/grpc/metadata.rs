//! Request values forwarded to gRPC upstreams as metadata: the one place
//! where this happens (docs/config.md, "Metadata").
//!
//! The front ends (`http.rs` for POST, `ws.rs` for WebSocket) collect the
//! request's values into a [`RequestContext`], keyed by source:
//! `header:<name>` for an HTTP request header (of the POST, or of the
//! WebSocket upgrade), `init:<field>` for a `connection_init` payload field,
//! `claim:<name>` for a verified token's claim. They collect only the keys
//! some upstream forwards ([`ContextCapture`]). The core hands the context to
//! every gRPC call of the operation, and each upstream sends what its
//! `[grpc.<name>]` configuration asks for ([`UpstreamMetadata`]): its static
//! `metadata`, `forward_headers` and `forward_init` (and any other
//! `forward_context` key such as `claim:sub`).

use http::{HeaderName, HeaderValue};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use terminus_core::RequestContext;

/// Metadata names an upstream may not be configured to send: the ones gRPC
/// and HTTP/2 define themselves.
const RESERVED: [&str; 10] = [
    "te",
    "content-type",
    "user-agent",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "grpc-timeout",
];

/// What one upstream sends: fixed entries and entries taken from the
/// request's context. Built once at start-up from the configuration.
#[derive(Debug, Clone, Default)]
pub struct UpstreamMetadata {
    fixed: Vec<(HeaderName, HeaderValue)>,
    /// (context key, metadata name).
    mapped: Vec<(String, HeaderName)>,
}

impl UpstreamMetadata {
    /// Checks and builds the metadata of upstream `upstream` from its
    /// configured static `metadata` (name -> value), `forward_headers`
    /// (request header names, sent under the same name), `forward_init`
    /// (`connection_init` field -> metadata name) and `forward_context`
    /// (context key such as `claim:sub` -> metadata name).
    pub fn new(
        upstream: &str,
        fixed: &BTreeMap<String, String>,
        forward_headers: &[String],
        forward_init: &BTreeMap<String, String>,
        forward_context: &BTreeMap<String, String>,
    ) -> Result<UpstreamMetadata, String> {
        let name = |name: &str, what: &str| -> Result<HeaderName, String> {
            check_name(name)
                .map_err(|reason| format!("upstream {upstream}: {what} {name:?} {reason}"))
        };
        let mut out = UpstreamMetadata::default();
        for (key, value) in fixed {
            let header = name(key, "metadata")?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                format!("upstream {upstream}: metadata {key:?} has a value that is not valid in a header")
            })?;
            out.fixed.push((header, value));
        }
        for header in forward_headers {
            out.mapped.push((
                format!("header:{}", header.to_ascii_lowercase()),
                name(header, "forward_headers entry")?,
            ));
        }
        for (field, target) in forward_init {
            out.mapped.push((
                format!("init:{field}"),
                name(target, "forward_init target")?,
            ));
        }
        for (key, target) in forward_context {
            if !key.contains(':') {
                return Err(format!(
                    "upstream {upstream}: forward_context key {key:?} is not of the form source:name (header:, init:, claim:)"
                ));
            }
            out.mapped
                .push((key.clone(), name(target, "forward_context target")?));
        }
        Ok(out)
    }

    /// The context keys this upstream reads.
    pub fn context_keys(&self) -> impl Iterator<Item = &str> {
        self.mapped.iter().map(|(key, _)| key.as_str())
    }

    /// The metadata for one call: the fixed entries, then each mapped
    /// entry present in `context` (a value that is not valid in a header is
    /// left out).
    pub fn headers(&self, context: &RequestContext) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = self.fixed.clone();
        for (key, header) in &self.mapped {
            if let Some(value) = context.get(key) {
                if let Ok(value) = HeaderValue::from_str(value) {
                    out.push((header.clone(), value));
                }
            }
        }
        out
    }
}

/// Checks one configured metadata name (of an upstream's `metadata`,
/// `forward_*` tables, or of `[auth.jwt] claims_metadata`) and returns it
/// lowercased; the error says why it cannot be sent.
pub fn check_name(name: &str) -> Result<HeaderName, String> {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("grpc-") || lower.starts_with(':') || RESERVED.contains(&lower.as_str()) {
        return Err("is a name gRPC reserves for itself".to_owned());
    }
    if lower.ends_with("-bin") {
        return Err("is binary metadata (-bin), which Terminus does not send".to_owned());
    }
    HeaderName::from_bytes(lower.as_bytes()).map_err(|_| "is not a valid metadata name".to_owned())
}

/// Which request values the front ends collect: the union of the context
/// keys of every upstream, so nothing else is copied.
#[derive(Debug, Clone, Default)]
pub struct ContextCapture {
    headers: BTreeSet<String>,
    init: BTreeSet<String>,
    claims: BTreeSet<String>,
}

impl ContextCapture {
    /// The capture for these context keys (`header:x`, `init:y`,
    /// `claim:z`; others ignored).
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> ContextCapture {
        let mut capture = ContextCapture::default();
        for key in keys {
            if let Some(header) = key.strip_prefix("header:") {
                capture.headers.insert(header.to_owned());
            } else if let Some(field) = key.strip_prefix("init:") {
                capture.init.insert(field.to_owned());
            } else if let Some(claim) = key.strip_prefix("claim:") {
                capture.claims.insert(claim.to_owned());
            }
        }
        capture
    }

    /// Whether nothing is collected.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.init.is_empty() && self.claims.is_empty()
    }

    /// Adds the forwarded headers of a request to `context`. A header
    /// given several times is joined with `, `.
    pub fn add_headers(&self, context: &mut BTreeMap<String, String>, headers: &http::HeaderMap) {
        for name in &self.headers {
            let values: Vec<&str> = headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|value| value.to_str().ok())
                .collect();
            if !values.is_empty() {
                context.insert(format!("header:{name}"), values.join(", "));
            }
        }
    }

    /// Adds the forwarded fields of a `connection_init` payload to
    /// `context`: strings as they are, numbers and booleans as text; other
    /// values are left out.
    pub fn add_init(&self, context: &mut BTreeMap<String, String>, payload: Option<&Value>) {
        add_fields(context, "init", &self.init, payload);
    }

    /// Adds the forwarded claims of a verified token (its JSON claims
    /// object) to `context` as `claim:<name>`, like [`Self::add_init`].
    pub fn add_claims(&self, context: &mut BTreeMap<String, String>, claims: Option<&Value>) {
        add_fields(context, "claim", &self.claims, claims);
    }
}

/// `source:<field>` entries for the `wanted` fields of a JSON object:
/// strings as they are, numbers and booleans as text, others left out.
fn add_fields(
    context: &mut BTreeMap<String, String>,
    source: &str,
    wanted: &BTreeSet<String>,
    object: Option<&Value>,
) {
    let Some(Value::Object(object)) = object else {
        return;
    };
    for field in wanted {
        let text = match object.get(field) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(number)) => number.to_string(),
            Some(Value::Bool(flag)) => flag.to_string(),
            _ => continue,
        };
        context.insert(format!("{source}:{field}"), text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reserved_binary_and_malformed_names_are_refused() {
        assert_eq!(check_name("X-User-Id").unwrap().as_str(), "x-user-id");
        for bad in [
            "grpc-status",
            "content-type",
            "te",
            "user-agent",
            "host",
            "a b",
            "x-bin",
        ] {
            assert!(check_name(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn static_forwarded_and_init_values_become_metadata() {
        let metadata = UpstreamMetadata::new(
            "shop",
            &map(&[("x-api-key", "k1")]),
            &["Authorization".to_owned(), "x-request-id".to_owned()],
            &map(&[("tenant", "x-tenant")]),
            &map(&[("claim:sub", "x-user")]),
        )
        .unwrap();
        let capture = ContextCapture::from_keys(metadata.context_keys());
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Bearer t".parse().unwrap());
        headers.insert("cookie", "secret".parse().unwrap());
        let mut context = BTreeMap::new();
        capture.add_headers(&mut context, &headers);
        capture.add_init(&mut context, Some(&json!({"tenant": "acme", "other": "x"})));
        capture.add_claims(&mut context, Some(&json!({"sub": "u-1", "exp": {"x": 1}})));
        assert_eq!(
            context,
            map(&[
                ("header:authorization", "Bearer t"),
                ("init:tenant", "acme"),
                ("claim:sub", "u-1")
            ])
        );
        let sent: Vec<(String, String)> = metadata
            .headers(&Arc::new(context))
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            sent,
            [
                ("x-api-key", "k1"),
                ("authorization", "Bearer t"),
                ("x-tenant", "acme"),
                ("x-user", "u-1")
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn reserved_and_invalid_names_are_refused() {
        for name in [
            "grpc-status",
            "te",
            "content-type",
            "x-trace-bin",
            "bad name",
        ] {
            let error = UpstreamMetadata::new(
                "shop",
                &map(&[(name, "v")]),
                &[],
                &BTreeMap::new(),
                &BTreeMap::new(),
            )
            .unwrap_err();
            assert!(error.contains("upstream shop"), "{error}");
        }
        let error = UpstreamMetadata::new(
            "shop",
            &map(&[("x-a", "bad\nvalue")]),
            &[],
            &BTreeMap::new(),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(error.contains("not valid in a header"), "{error}");
        let error = UpstreamMetadata::new(
            "shop",
            &BTreeMap::new(),
            &[],
            &BTreeMap::new(),
            &map(&[("sub", "x-user")]),
        )
        .unwrap_err();
        assert!(error.contains("source:name"), "{error}");
    }
}
