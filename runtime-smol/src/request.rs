//! What `POST /graphql` (runtime-smol/src/http.rs) and the streaming
//! transports (runtime-smol/src/streaming.rs) share about an HTTP request:
//! its authorization, reading its JSON body within the size limit, parsing
//! it into an operation, and the JSON error responses.

use crate::gateway::Gateway;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use terminus_core::OperationRequest;

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
pub(crate) async fn authorize_post(
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

/// Parses a GraphQL-over-HTTP JSON body into a request.
pub(crate) fn parse_post_body(body: &[u8]) -> Result<OperationRequest, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let Value::Object(mut object) = value else {
        return Err("the body must be a JSON object {\"query\": ...}".to_owned());
    };
    let query = match object.remove("query") {
        Some(Value::String(query)) => query,
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
    }
}
