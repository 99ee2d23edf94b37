//! What `POST /graphql` (runtime-smol/src/http.rs) and the streaming
//! transports (runtime-smol/src/streaming.rs) share about an HTTP request:
//! its authorization, reading its JSON body within the size limit, parsing
//! it (or a GET's query string) into an operation, and the JSON error
//! responses; and what every transport, the WebSocket
//! (runtime-smol/src/ws.rs) included, shares to start an operation:
//! [`start_execution`], persisted queries first.

use crate::gateway::Gateway;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use terminus_core::graphql::Execution;
use terminus_core::{OperationRequest, RequestContext};

type Body = Full<Bytes>;

pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    respond(status, "application/json", body.to_string())
}

/// A `{"errors": [{"message": ...}]}` response.
pub(crate) fn graphql_error_response(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "errors": [{ "message": message }] }))
}

/// POST's credentials: `Authorization: Bearer <token>`, checked against
/// `[auth.jwt]` or `auth.tokens` (nothing is required when neither is
/// set). A refusal is 401 with a JSON error and `WWW-Authenticate`. The
/// answer is the token's claims (empty without JWT).
async fn authorize_post(
    gateway: &Gateway,
    request: &Request<Incoming>,
) -> Result<Map<String, Value>, Response<Body>> {
    let tokens = &gateway.config.auth.tokens;
    if gateway.jwt.is_none() && tokens.is_empty() {
        return Ok(Map::new());
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let v = v.trim();
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| v[7..].trim())
        });
    let outcome = match (bearer, &gateway.jwt) {
        (None, _) => Err("missing Authorization: Bearer <token>".to_owned()),
        (Some(token), Some(jwt)) => jwt.verify(token).await.map(|v| v.claims),
        (Some(token), None) => {
            if tokens.iter().any(|t| t == token) {
                Ok(Map::new())
            } else {
                Err("unknown token".to_owned())
            }
        }
    };
    outcome.map_err(|reason| {
        let mut response = json_response(
            StatusCode::UNAUTHORIZED,
            &json!({ "errors": [{
                "message": format!("Unauthorized: {reason}"),
                "extensions": {"code": "UNAUTHENTICATED"},
            }] }),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        response
    })
}

/// [`authorize_post`] for one HTTP request (POST, GET or streaming),
/// counted in `auth_rejected_total` when refused, with the request's
/// context: its captured headers and the token's claims
/// (`[context_capture]`).
pub(crate) async fn authorize_request(
    gateway: &Gateway,
    request: &Request<Incoming>,
) -> Result<(Map<String, Value>, RequestContext), Response<Body>> {
    let claims = match authorize_post(gateway, request).await {
        Ok(claims) => claims,
        Err(response) => {
            gateway
                .metrics
                .auth_rejected_total
                .fetch_add(1, Ordering::Relaxed);
            return Err(response);
        }
    };
    let capture = &gateway.live().context_capture;
    let mut context = BTreeMap::new();
    capture.add_headers(&mut context, request.headers());
    capture.add_claims(&mut context, Some(&Value::Object(claims.clone())));
    Ok((claims, Arc::new(context)))
}

/// Parses a GraphQL-over-HTTP JSON body into a request.
pub(crate) fn parse_post_body(body: &[u8]) -> Result<OperationRequest, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let Value::Object(mut object) = value else {
        return Err("the body must be a JSON object {\"query\": ...}".to_owned());
    };
    // A persisted query (core/src/graphql/persisted.rs) may come as its
    // hash alone: the query is then empty until it is resolved.
    let persisted = matches!(
        object
            .get("extensions")
            .and_then(|e| e.get("persistedQuery")),
        Some(Value::Object(_))
    );
    let query = match object.remove("query") {
        Some(Value::String(query)) => query,
        None | Some(Value::Null) if persisted => String::new(),
        _ => return Err("\"query\" must be a string".to_owned()),
    };
    let operation_name = match object.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(_) => return Err("\"operationName\" must be a string or null".to_owned()),
    };
    let object_field = |value: Option<Value>, name: &str| -> Result<Map<String, Value>, String> {
        match value {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(map)) => Ok(map),
            Some(_) => Err(format!("\"{name}\" must be an object or null")),
        }
    };
    let variables = object_field(object.remove("variables"), "variables")?;
    let extensions = object_field(object.remove("extensions"), "extensions")?;
    Ok(OperationRequest {
        id: "http".to_owned(),
        query,
        operation_name,
        variables,
        extensions,
    })
}

/// Starts `request` on any transport: resolves its persisted query
/// (`extensions.persistedQuery`, core/src/graphql/persisted.rs, against the
/// gateway's one store), then prepares it with `Execution::start_with`. A
/// persisted-query refusal is the execution's one (terminal) error, as a
/// request that does not prepare.
pub(crate) fn start_execution(
    gateway: &Gateway,
    mut request: OperationRequest,
    claims: Map<String, Value>,
    context: RequestContext,
) -> Execution {
    let resolved = gateway
        .persisted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .resolve(&mut request);
    match resolved {
        Ok(()) => Execution::start_with(
            &gateway.live().schema,
            &request,
            &gateway.graphql_limits,
            claims,
            context,
        ),
        Err(error) => Execution::refused(vec![error]),
    }
}

/// Decodes one `application/x-www-form-urlencoded` value.
fn form_decode(value: &str) -> String {
    percent_encoding::percent_decode_str(&value.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Reads a GET request's operation from its query string (`query`,
/// `operationName`, and `variables`/`extensions` as JSON text).
pub(crate) fn parse_get_query(query: &str) -> Result<OperationRequest, String> {
    let mut object = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = form_decode(key);
        let value = form_decode(value);
        let value = match key.as_str() {
            "variables" | "extensions" if !value.is_empty() => serde_json::from_str(&value)
                .map_err(|e| format!("\"{key}\" is not valid JSON: {e}"))?,
            "query" | "operationName" => Value::String(value),
            _ => continue,
        };
        object.insert(key, value);
    }
    parse_post_body(Value::Object(object).to_string().as_bytes())
}

/// Reads `request`'s JSON body (for `what`, named in the errors) and parses
/// it into an operation. A content type other than JSON is 415; a declared
/// length beyond `limits.max_http_body_bytes` is 413 at once, before a byte
/// of the body is read (the connection is then closed, since the body is
/// left unread), and so is a body that grows beyond it. The caller bounds
/// the time (`timeouts.http_request`).
pub(crate) async fn read_operation(
    gateway: &Gateway,
    request: Request<Incoming>,
    what: &str,
) -> Result<OperationRequest, Response<Body>> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        return Err(graphql_error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("{what} needs Content-Type: application/json"),
        ));
    }
    let limit = gateway.config.limits.max_http_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let mut response = graphql_error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is larger than {limit} bytes (limits.max_http_body_bytes)"),
        );
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Err(response);
    }
    let body = match Limited::new(request.into_body(), limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(graphql_error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is larger than {limit} bytes"),
            ));
        }
        Err(_) => {
            return Err(graphql_error_response(
                StatusCode::BAD_REQUEST,
                "could not read the request body",
            ))
        }
    };
    parse_post_body(&body)
        .map_err(|message| graphql_error_response(StatusCode::BAD_REQUEST, &message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_body_is_checked() {
        let ok = parse_post_body(br#"{"query":"{ hello }","variables":null,"operationName":"A"}"#)
            .unwrap();
        assert_eq!(ok.query, "{ hello }");
        assert_eq!(ok.operation_name.as_deref(), Some("A"));
        assert!(ok.variables.is_empty());
        assert!(parse_post_body(b"nope")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(parse_post_body(br#"{"query":1}"#)
            .unwrap_err()
            .contains("query"));
        assert!(parse_post_body(br#"{"query":"x","variables":[]}"#)
            .unwrap_err()
            .contains("variables"));
        // A persisted query's hash alone: the query is resolved later.
        let hashed = parse_post_body(
            br#"{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"ab"}}}"#,
        )
        .unwrap();
        assert_eq!(hashed.query, "");
        assert!(parse_post_body(br#"{"extensions":{}}"#)
            .unwrap_err()
            .contains("query"));
    }

    #[test]
    fn get_query_is_decoded() {
        let op = parse_get_query(
            "query=subscription+%7B+ticks(limit%3A+2)+%7D&operationName=T&variables=%7B%22a%22%3A1%7D",
        )
        .unwrap();
        assert_eq!(op.query, "subscription { ticks(limit: 2) }");
        assert_eq!(op.operation_name.as_deref(), Some("T"));
        assert_eq!(op.variables.get("a"), Some(&json!(1)));
        assert!(parse_get_query("query=x&variables=nope")
            .unwrap_err()
            .contains("variables"));
        assert!(parse_get_query("").unwrap_err().contains("query"));
        let hashed = parse_get_query(
            "operationName=A&extensions=%7B%22persistedQuery%22%3A%7B%22version%22%3A1%2C%22sha256Hash%22%3A%22ab%22%7D%7D",
        )
        .unwrap();
        assert_eq!(hashed.query, "");
    }
}
