//! Streaming HTTP transports (docs/transports.md): GraphQL over
//! Server-Sent Events (the graphql-sse protocol, "distinct connections"
//! mode) and multipart HTTP subscriptions as Apollo Client sends them
//! (`multipart/mixed;subscriptionSpec="1.0"`).
//!
//! One request is one operation. The operation is started with the core's
//! `Execution::start_with` and run by `execute::run_operation_guarded`, as
//! on the WebSocket (runtime-smol/src/ws.rs); its task is owned by the
//! response body. When the client goes away hyper drops the body, which
//! drops the task, which drops the upstream calls (gRPC stream reset, SQL
//! query killed): the operation ends at once, not at its next event.

use crate::execute;
use crate::gateway::{ConnectionSlot, Gateway};
use crate::request::{
    authorize_request, graphql_error_response, parse_get_query, read_operation, start_execution,
};
use crate::tasks;
use futures_lite::{FutureExt, Stream};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use terminus_core::server::Admission;
use terminus_core::{OpId, UpstreamEvent};

/// A response body that is either whole or streamed.
pub(crate) type AnyBody = UnsyncBoxBody<Bytes, Infallible>;

/// The multipart boundary of multipart subscriptions.
pub const MULTIPART_BOUNDARY: &str = "graphql";

/// The `Content-Type` of a multipart subscription response.
pub const MULTIPART_CONTENT_TYPE: &str =
    "multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\"";

/// Which streaming wire format a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `Accept: text/event-stream`: graphql-sse events.
    Sse,
    /// `Accept: multipart/mixed;subscriptionSpec="1.0"`: Apollo's
    /// multipart subscriptions.
    Multipart,
}

/// The streaming format named by the request's `Accept` header, if any:
/// the first of its media types (in the client's order) that is
/// `text/event-stream` or `multipart/mixed` with `subscriptionSpec=1.0`.
/// When `json_first_wins` (on `/graphql`), a JSON media type listed before
/// them keeps the plain JSON answer, so a client that lists every type it
/// can read (urql, Apollo's `deferSpec` queries) still gets JSON for a
/// query.
pub(crate) fn negotiate(request: &Request<Incoming>, json_first_wins: bool) -> Option<Format> {
    let values: Vec<&str> = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    negotiate_accept(&values, json_first_wins)
}

fn negotiate_accept(values: &[&str], json_first_wins: bool) -> Option<Format> {
    for media in values.iter().flat_map(|v| v.split(',')) {
        let media = media.replace(' ', "").to_ascii_lowercase();
        if media.starts_with("text/event-stream") {
            return Some(Format::Sse);
        }
        if media.starts_with("multipart/mixed")
            && (media.contains("subscriptionspec=\"1.0\"")
                || media.contains("subscriptionspec=1.0"))
        {
            return Some(Format::Multipart);
        }
        if json_first_wins
            && (media.starts_with("application/json")
                || media.starts_with("application/graphql-response+json"))
        {
            return None;
        }
    }
    None
}

/// Bytes of one event in `format`. `refused`: the errors are those of a
/// request that did not start (validation, a persisted-query refusal); in
/// multipart they are a result (`{"payload": {"errors": [...]}}`, which
/// Apollo Client reads as GraphQL errors, so its persisted-queries link can
/// retry), while an operation that fails once started ends with the
/// transport-level `{"payload": null, "errors": [...]}`.
fn encode(format: Format, event: &UpstreamEvent, refused: bool) -> Bytes {
    match (format, event) {
        (Format::Multipart, UpstreamEvent::Error(errors)) if refused => {
            multipart_part(&json!({ "payload": { "errors": errors } }))
        }
        (Format::Sse, UpstreamEvent::Next(value)) => format!("event: next\ndata: {value}\n\n"),
        (Format::Sse, UpstreamEvent::NextEncoded(text)) => {
            format!("event: next\ndata: {}\n\n", text.as_str())
        }
        (Format::Sse, UpstreamEvent::Error(errors)) => {
            format!("event: next\ndata: {}\n\n", json!({ "errors": errors }))
        }
        (Format::Sse, UpstreamEvent::Complete) => "event: complete\ndata:\n\n".to_owned(),
        (Format::Multipart, UpstreamEvent::Next(value)) => {
            multipart_part(&json!({ "payload": value }))
        }
        (Format::Multipart, UpstreamEvent::NextEncoded(text)) => {
            multipart_part_raw(&format!("{{\"payload\":{}}}", text.as_str()))
        }
        (Format::Multipart, UpstreamEvent::Error(errors)) => {
            multipart_part(&json!({ "payload": null, "errors": errors }))
        }
        (Format::Multipart, UpstreamEvent::Complete) => {
            format!("\r\n--{MULTIPART_BOUNDARY}--\r\n")
        }
    }
    .into()
}

fn multipart_part(value: &Value) -> String {
    multipart_part_raw(&value.to_string())
}

/// [`multipart_part`] of JSON text that is already encoded.
fn multipart_part_raw(json: &str) -> String {
    format!("\r\n--{MULTIPART_BOUNDARY}\r\ncontent-type: application/json\r\n\r\n{json}")
}

/// The keep-alive of `format`: an SSE comment, or an empty multipart part.
fn keepalive(format: Format) -> Bytes {
    match format {
        Format::Sse => Bytes::from_static(b":\n\n"),
        Format::Multipart => multipart_part(&json!({})).into(),
    }
}

/// Counts one streaming response in `terminus_http_streams` while it lives.
struct StreamSlot(Arc<Gateway>);

impl StreamSlot {
    fn admit(gateway: &Arc<Gateway>) -> Option<Self> {
        let live = gateway.metrics.http_streams.fetch_add(1, Ordering::Relaxed);
        let slot = StreamSlot(gateway.clone());
        (usize::try_from(live).unwrap_or(0) < gateway.config.limits.max_http_streams)
            .then_some(slot)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.metrics.http_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a streamed operation in `terminus_operations` while it runs.
struct LiveOperation(Arc<Gateway>);

impl Drop for LiveOperation {
    fn drop(&mut self) {
        self.0.metrics.add_operations(-1);
    }
}

/// What a streaming body owns: dropping it ends the operation.
struct Running {
    format: Format,
    events: crate::events::Receiver<(OpId, UpstreamEvent)>,
    /// The operation's task; dropping it cancels the operation.
    task: Option<smol::Task<()>>,
    live: Option<LiveOperation>,
    _slot: StreamSlot,
    /// The drain's connection count includes this response.
    _connection: ConnectionSlot,
    shutdown: async_channel::Receiver<()>,
    keepalive: Option<Duration>,
    done: bool,
    /// The request did not start (its errors are its only output).
    refused: bool,
}

impl Running {
    /// The next chunk of the body, or `None` after the terminal event or
    /// when the gateway drains.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        enum Wake {
            Event(Result<(OpId, UpstreamEvent), crate::events::RecvError>),
            Keepalive,
            Shutdown,
        }
        if self.done {
            return None;
        }
        let received = async { Wake::Event(self.events.recv().await) };
        let period = self.keepalive;
        let tick = async move {
            match period {
                Some(period) => {
                    smol::Timer::after(period).await;
                }
                None => std::future::pending::<()>().await,
            }
            Wake::Keepalive
        };
        let shutdown = self.shutdown.clone();
        let shutdown = async move {
            // Closed (never sent on) when the drain closes every connection.
            let _ = shutdown.recv().await;
            Wake::Shutdown
        };
        match received.or(tick).or(shutdown).await {
            Wake::Keepalive => Some(keepalive(self.format)),
            Wake::Event(Ok((_, event))) => {
                let mut bytes = encode(self.format, &event, self.refused).to_vec();
                if event.is_terminal() {
                    self.finish();
                    // An error ends the stream too: SSE's `complete`, the
                    // multipart final boundary.
                    if matches!(event, UpstreamEvent::Error(_)) {
                        bytes.extend_from_slice(&encode(
                            self.format,
                            &UpstreamEvent::Complete,
                            false,
                        ));
                    }
                }
                Some(bytes.into())
            }
            // The operation's task ended without a terminal event.
            Wake::Event(Err(_)) => {
                self.finish();
                Some(encode(self.format, &UpstreamEvent::Complete, false))
            }
            // Drain: cancel the operation and end the response without a
            // terminal event, so the client reconnects (to another
            // instance) rather than taking the stream as complete.
            Wake::Shutdown => {
                self.finish();
                None
            }
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.task = None;
        self.live = None;
    }
}

/// The body stream that drives `running` chunk by chunk.
fn body_stream(running: Running) -> impl Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    futures_lite::stream::unfold(running, |mut running| async move {
        let chunk = running.next_chunk().await?;
        Some((Ok(Frame::data(chunk)), running))
    })
}

/// Whole JSON response for a refused streaming request.
fn refuse(status: StatusCode, message: &str) -> Response<AnyBody> {
    graphql_error_response(status, message).map(|b| b.boxed_unsync())
}

/// Serves one streaming request on `/graphql` or `/graphql/stream`:
/// auth and admission first (plain HTTP errors), then one operation whose
/// events are the response body in `format`.
pub(crate) async fn serve(
    gateway: &Arc<Gateway>,
    request: Request<Incoming>,
    format: Format,
) -> Response<AnyBody> {
    let (claims, context) = match authorize_request(gateway, &request).await {
        Ok(authorized) => authorized,
        Err(response) => return response.map(|b| b.boxed_unsync()),
    };
    let operation = match *request.method() {
        Method::GET => parse_get_query(request.uri().query().unwrap_or("")),
        Method::POST => {
            let read = read_operation(gateway, request, "a streaming POST");
            match crate::timeout::timeout(gateway.config.timeouts.http_request, read).await {
                Ok(Ok(operation)) => Ok(operation),
                Ok(Err(response)) => return response.map(|b| b.boxed_unsync()),
                Err(_) => {
                    return refuse(StatusCode::BAD_REQUEST, "could not read the request body");
                }
            }
        }
        _ => {
            return refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "a streaming request is a GET or a POST",
            )
        }
    };
    let operation = match operation {
        Ok(operation) => operation,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, &message),
    };
    let Some(slot) = StreamSlot::admit(gateway) else {
        let mut response = refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "streaming response limit reached (limits.max_http_streams): try again later",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let connection = match ConnectionSlot::admit(gateway) {
        Ok(connection) => connection,
        Err(Admission::Full) => {
            let mut response = refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "connection limit reached (limits.max_connections): try again later",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        Err(Admission::Draining | Admission::Admitted) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining: connect to another instance",
            );
        }
    };
    let panic_for_test = gateway.config.testing.panic_trigger
        && operation.operation_name.as_deref() == Some(crate::config::PANIC_TRIGGER_OPERATION_TASK);
    let execution = start_execution(gateway, operation, claims, context);
    // `None`: the request did not prepare; its errors are its only output
    // and the operation is not counted (as on POST).
    let refused = execution.kind().is_none();
    let live = execution.kind().map(|_| {
        gateway
            .metrics
            .operations_started_total
            .fetch_add(1, Ordering::Relaxed);
        gateway.metrics.add_operations(1);
        LiveOperation(gateway.clone())
    });
    let (tx, rx) = crate::events::bounded(gateway.config.limits.operation_queue);
    let task = tasks::spawn(execute::run_operation_guarded(
        gateway.clone(),
        execution,
        OpId(0),
        tx,
        panic_for_test,
    ));
    let period = gateway.config.timeouts.stream_keepalive;
    let running = Running {
        format,
        events: rx,
        task: Some(task),
        live,
        _slot: slot,
        _connection: connection,
        shutdown: gateway.shutdown.clone(),
        keepalive: (!period.is_zero()).then_some(period),
        done: false,
        refused,
    };
    let body = StreamBody::new(body_stream(running)).boxed_unsync();
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    let content_type = match format {
        Format::Sse => "text/event-stream; charset=utf-8",
        Format::Multipart => MULTIPART_CONTENT_TYPE,
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_is_negotiated_in_the_clients_order() {
        assert_eq!(
            negotiate_accept(&["text/event-stream"], true),
            Some(Format::Sse)
        );
        let apollo = "multipart/mixed;boundary=\"graphql\";subscriptionSpec=1.0,application/json";
        assert_eq!(negotiate_accept(&[apollo], true), Some(Format::Multipart));
        let apollo_query = "multipart/mixed;deferSpec=20220824,application/json";
        assert_eq!(negotiate_accept(&[apollo_query], true), None);
        let urql = "application/graphql-response+json, application/json, text/event-stream, multipart/mixed";
        assert_eq!(negotiate_accept(&[urql], true), None);
        assert_eq!(negotiate_accept(&[urql], false), Some(Format::Sse));
        assert_eq!(negotiate_accept(&["application/json"], false), None);
    }

    #[test]
    fn wire_format() {
        let next = UpstreamEvent::Next(json!({"data": {"a": 1}}));
        assert_eq!(
            encode(Format::Sse, &next, false),
            "event: next\ndata: {\"data\":{\"a\":1}}\n\n"
        );
        assert_eq!(
            encode(Format::Sse, &UpstreamEvent::Complete, false),
            "event: complete\ndata:\n\n"
        );
        assert_eq!(
            encode(Format::Multipart, &next, false),
            "\r\n--graphql\r\ncontent-type: application/json\r\n\r\n{\"payload\":{\"data\":{\"a\":1}}}"
        );
        assert_eq!(
            encode(Format::Multipart, &UpstreamEvent::Complete, false),
            "\r\n--graphql--\r\n"
        );
        assert_eq!(keepalive(Format::Sse), ":\n\n");
        let errors = UpstreamEvent::Error(vec![json!({"message": "m"})]);
        assert_eq!(
            encode(Format::Multipart, &errors, true),
            "\r\n--graphql\r\ncontent-type: application/json\r\n\r\n{\"payload\":{\"errors\":[{\"message\":\"m\"}]}}"
        );
        assert_eq!(
            encode(Format::Multipart, &errors, false),
            "\r\n--graphql\r\ncontent-type: application/json\r\n\r\n{\"payload\":null,\"errors\":[{\"message\":\"m\"}]}"
        );
    }
}
