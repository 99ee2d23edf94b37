//! HTTP on one listener: `/graphql` (WebSocket upgrade and POST),
//! `/metrics`, `/healthz`, `/readyz`, `/admin` and `/admin/state`.
//!
//! Each TCP connection is one task (owned by the server's table) that runs
//! hyper's HTTP/1 connection; when a request upgrades to WebSocket, the same
//! task goes on to drive the WebSocket, so the connection stays one task
//! with one owner from accept to close.

use crate::admin;
use crate::execute;
use crate::gateway::{ConnectionSlot, Gateway};
use crate::request::{self, graphql_error_response, json_response, respond};
use crate::streaming;
use crate::tasks;
use crate::timeout::timeout;
use crate::tls::Conn;
use crate::ws;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use smol::net::TcpStream;
use smol_hyper::rt::{FuturesIo, SmolTimer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use terminus_core::graphql::OperationKind;
use terminus_core::server::{Admission, Subprotocol};
use terminus_core::{OpId, OperationRequest, RequestContext, UpstreamEvent};

type Body = Full<Bytes>;

/// A WebSocket upgrade that the HTTP side accepted, waiting for hyper to
/// hand over the socket.
pub(crate) struct PendingUpgrade {
    on_upgrade: hyper::upgrade::OnUpgrade,
    protocol: Subprotocol,
    slot: ConnectionSlot,
    /// The upgrade request's forwarded headers (grpc/metadata.rs).
    context: BTreeMap<String, String>,
}

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    /// `listen`: GraphQL, health, and the admin surface unless it moved.
    Main,
    /// `admin.listen`: the admin surface and health only.
    Admin,
}

/// Serves one TCP connection of the listener `surface`: HTTP/1 requests,
/// then the WebSocket if one of them upgraded; then sends `finished.1` on
/// `finished.0` (the server's table of connection tasks).
///
/// The returned future is the connection task. While the WebSocket is open
/// it holds the [`ws::WebSocketTask`] inline and 24 bytes besides: the
/// HTTP part (TLS handshake, hyper's connection, this function's
/// arguments) and the WebSocket's opening are boxed and freed before.
pub(crate) fn serve_tcp_on(
    gateway: Arc<Gateway>,
    acceptor: crate::tls::Acceptor,
    stream: TcpStream,
    peer: SocketAddr,
    surface: Surface,
    finished: (async_channel::Sender<u64>, u64),
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let http = Box::pin(serve_http(gateway, acceptor, stream, peer, surface));
    async move {
        // Only the box lives across the awaits (an `Upgraded` bound here
        // would keep its room in this future).
        if let Some(opening) = http.await.map(open_websocket) {
            opening.await.await;
        }
        // Unbounded: never full.
        let _ = finished.0.try_send(finished.1);
    }
}

/// The WebSocket's opening on `upgraded`, boxed (see [`serve_tcp_on`]).
fn open_websocket(
    upgraded: Upgraded,
) -> std::pin::Pin<Box<impl std::future::Future<Output = ws::WebSocketTask> + Send>> {
    Box::pin(ws::open(
        upgraded.gateway,
        upgraded.stream,
        upgraded.already_read,
        upgraded.protocol,
        upgraded.peer,
        upgraded.slot,
        upgraded.context,
    ))
}

/// A connection that upgraded to WebSocket, as hyper handed it back.
struct Upgraded {
    gateway: Arc<Gateway>,
    peer: SocketAddr,
    stream: Conn,
    /// Bytes of the WebSocket that hyper read past the upgrade request.
    already_read: Vec<u8>,
    protocol: Subprotocol,
    slot: ConnectionSlot,
    context: BTreeMap<String, String>,
}

/// The HTTP/1 part of a connection: TLS, then hyper until the connection
/// ends or upgrades. Everything hyper held (its read and write buffers)
/// is dropped before this returns the upgraded socket.
async fn serve_http(
    gateway: Arc<Gateway>,
    acceptor: crate::tls::Acceptor,
    stream: TcpStream,
    peer: SocketAddr,
    surface: Surface,
) -> Option<Upgraded> {
    let _ = stream.set_nodelay(true);
    let send_buffer = gateway.config.limits.socket_send_buffer_bytes;
    if send_buffer > 0 {
        // What the client does not read waits in the gateway, counted by
        // `max_outbound_bytes`, not in a kernel buffer that autotunes to
        // megabytes.
        if let Err(error) = rustix::net::sockopt::set_socket_send_buffer_size(&stream, send_buffer)
        {
            tracing::debug!(%peer, %error, "cannot set SO_SNDBUF");
        }
    }
    let stream = match acceptor.accept(stream).await {
        Ok(stream) => stream,
        Err(error) => {
            gateway
                .metrics
                .tls_handshake_failures_total
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, %error, "TLS handshake failed");
            return None;
        }
    };
    let upgrade: Arc<Mutex<Option<PendingUpgrade>>> = Arc::new(Mutex::new(None));
    let service = {
        let gateway = gateway.clone();
        let upgrade = upgrade.clone();
        hyper::service::service_fn(move |request| {
            let gateway = gateway.clone();
            let upgrade = upgrade.clone();
            async move {
                gateway
                    .metrics
                    .http_requests_total
                    .fetch_add(1, Ordering::Relaxed);
                let response = match admin_gate(&gateway, &request, surface) {
                    Some(refused) => refused.map(BodyExt::boxed_unsync),
                    None => match streaming_route(&request) {
                        Some(format) => streaming::serve(&gateway, request, format).await,
                        None => route(&gateway, request, &upgrade)
                            .await
                            .map(BodyExt::boxed_unsync),
                    },
                };
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(SmolTimer::new())
        .header_read_timeout(gateway.config.timeouts.http_header_read)
        .keep_alive(true);
    let connection = builder
        .serve_connection(FuturesIo::new(stream), service)
        .with_upgrades();
    if let Err(error) = connection.await {
        tracing::debug!(%peer, %error, "HTTP connection ended with an error");
    }
    let pending = upgrade.lock().unwrap_or_else(|e| e.into_inner()).take()?;
    match pending.on_upgrade.await {
        Ok(upgraded) => match upgraded.downcast::<FuturesIo<Conn>>() {
            Ok(parts) => {
                // `read_buf` may share hyper's 8 KiB read buffer: copy what
                // it holds and let the buffer go with it.
                let already_read = parts.read_buf.to_vec();
                drop(parts.read_buf);
                Some(Upgraded {
                    gateway,
                    peer,
                    stream: parts.io.into_inner(),
                    already_read,
                    protocol: pending.protocol,
                    slot: pending.slot,
                    context: pending.context,
                })
            }
            Err(_) => {
                tracing::error!(%peer, "upgraded connection is not the TCP stream we served");
                None
            }
        },
        Err(error) => {
            tracing::debug!(%peer, %error, "WebSocket upgrade did not complete");
            None
        }
    }
}

/// The streaming transport a request asks for (docs/transports.md):
/// `/graphql` and `/graphql/stream` with `Accept: text/event-stream` (SSE)
/// or `Accept: multipart/mixed;subscriptionSpec="1.0"` (multipart), never
/// a WebSocket upgrade.
fn streaming_route(request: &Request<Incoming>) -> Option<streaming::Format> {
    let path = request.uri().path();
    if !matches!(path, "/graphql" | "/graphql/stream") || is_websocket_upgrade(request) {
        return None;
    }
    streaming::negotiate(request, path == "/graphql")
}

async fn route(
    gateway: &Arc<Gateway>,
    request: Request<Incoming>,
    upgrade: &Mutex<Option<PendingUpgrade>>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    // HEAD is answered wherever GET is (RFC 9110 9.3.2): the same status
    // and headers; hyper leaves the body out of a response to HEAD.
    let method = if request.method() == Method::HEAD {
        Method::GET
    } else {
        request.method().clone()
    };
    match (&method, path.as_str()) {
        (_, "/graphql") if is_websocket_upgrade(&request) => websocket_upgrade(gateway, request, upgrade),
        (&Method::POST, "/graphql") => graphql_post(gateway, request).await,
        (&Method::GET, "/graphql") if request.uri().query().is_some_and(|q| !q.is_empty()) => {
            graphql_get(gateway, request).await
        }
        (&Method::GET, "/graphql") => graphql_error_response(
            StatusCode::BAD_REQUEST,
            "GET /graphql without a WebSocket upgrade: open a WebSocket with subprotocol graphql-transport-ws or graphql-ws, or POST application/json",
        ),
        (_, "/graphql") => graphql_error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "/graphql accepts a WebSocket upgrade or POST",
        ),
        (_, "/graphql/stream") => graphql_error_response(
            StatusCode::NOT_ACCEPTABLE,
            "/graphql/stream serves Accept: text/event-stream (graphql-sse) or multipart/mixed;subscriptionSpec=\"1.0\" (docs/transports.md)",
        ),
        (&Method::GET, "/metrics") => {
            let mut text = gateway.metrics.render(gateway.sampled());
            gateway.live().upstreams.write_prometheus(&mut text);
            crate::metrics::write_capacity(&mut text, &gateway.capacity());
            respond(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text)
        }
        (&Method::GET, "/healthz") => respond(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") => {
            if gateway.is_ready() {
                respond(StatusCode::OK, "text/plain", "ready\n")
            } else if gateway.is_draining() {
                respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
            } else {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "full: limits.max_connections are open\n",
                )
            }
        }
        (&Method::GET, "/admin") | (&Method::GET, "/admin/") => {
            respond(StatusCode::OK, "text/html; charset=utf-8", admin::PAGE)
        }
        (&Method::POST, "/admin/reload") => {
            if gateway.config.admin.token.is_none() {
                return respond(
                    StatusCode::FORBIDDEN,
                    "text/plain",
                    "forbidden: POST /admin/reload needs admin.token (or send SIGHUP)\n",
                );
            }
            match crate::reload::reload(gateway).await {
                Ok(summary) => respond(StatusCode::OK, "text/plain", format!("reloaded: {summary}\n")),
                Err(why) => respond(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "text/plain",
                    format!("reload failed, nothing changed: {why}\n"),
                ),
            }
        }
        (&Method::GET, "/admin/state") => {
            let state = admin::state(gateway);
            respond(StatusCode::OK, "application/json", state.to_string())
        }
        (&Method::GET, p) if crate::simulator::is_simulator_path(p) => {
            crate::simulator::serve(p).await
        }
        (&Method::GET, "/") => respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "Terminus: /graphql (WebSocket, POST), /metrics, /healthz, /readyz, /admin, /simulator\n",
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

fn is_admin_path(path: &str) -> bool {
    matches!(
        path,
        "/admin" | "/admin/" | "/admin/state" | "/admin/reload" | "/metrics"
    )
}

/// The admin surface's rules (`[admin]`, docs/security.md): on the admin
/// listener only admin paths and health; on the main listener admin paths
/// only when `AdminConfig::open_on_main` allows; a configured token is
/// required wherever they are served. `None` lets the request through.
fn admin_gate(
    gateway: &Gateway,
    request: &Request<Incoming>,
    surface: Surface,
) -> Option<Response<Body>> {
    let path = request.uri().path();
    let admin = &gateway.config.admin;
    if !is_admin_path(path) {
        return match surface {
            Surface::Admin if !matches!(path, "/healthz" | "/readyz") => {
                Some(respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"))
            }
            _ => None,
        };
    }
    if surface == Surface::Main {
        if admin.listen.is_some() {
            return Some(respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: the admin surface is on admin.listen\n",
            ));
        }
        if !admin.open_on_main(gateway.config.listen) {
            return Some(respond(
                StatusCode::FORBIDDEN,
                "text/plain",
                "forbidden: the listen address is not loopback; set admin.token or admin.listen to serve /admin and /metrics (docs/security.md)\n",
            ));
        }
    }
    let Some(token) = &admin.token else {
        return None;
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(crate::jwt::strip_bearer);
    let query = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(|v| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
    });
    let given = bearer.map(str::to_owned).or(query);
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        return None;
    }
    let mut response = respond(
        StatusCode::UNAUTHORIZED,
        "text/plain",
        "unauthorized: send Authorization: Bearer <admin.token> (or ?token=)\n",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(response)
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `extensions.code` of a POST that passed `timeouts.http_request` (504).
pub const REQUEST_TIMEOUT_CODE: &str = "GATEWAY_TIMEOUT";

fn header_has_token(request: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    request.headers().get_all(name).iter().any(|value| {
        value
            .to_str()
            .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

fn is_websocket_upgrade(request: &Request<Incoming>) -> bool {
    request.method() == Method::GET
        && header_has_token(request, header::CONNECTION, "upgrade")
        && header_has_token(request, header::UPGRADE, "websocket")
}

/// The subprotocols a client offered, in its order.
fn offered_subprotocols(request: &Request<Incoming>) -> Vec<String> {
    request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

fn websocket_upgrade(
    gateway: &Arc<Gateway>,
    mut request: Request<Incoming>,
    upgrade: &Mutex<Option<PendingUpgrade>>,
) -> Response<Body> {
    let version_ok = request
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let Some(key) = request.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return respond(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "missing Sec-WebSocket-Key\n",
        );
    };
    // RFC 6455 4.1: the key is 16 random bytes, base64-encoded.
    let key_ok = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(key.as_bytes())
            .is_ok_and(|bytes| bytes.len() == 16)
    };
    if !key_ok {
        return respond(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "Sec-WebSocket-Key must be 16 bytes in base64\n",
        );
    }
    let allowed = &gateway.config.auth.allowed_origins;
    if !allowed.is_empty() {
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
                return respond(
                    StatusCode::FORBIDDEN,
                    "text/plain",
                    format!("Origin {origin:?} is not in auth.allowed_origins\n"),
                );
            }
        }
    }
    if !version_ok {
        let mut response = respond(
            StatusCode::UPGRADE_REQUIRED,
            "text/plain",
            "only WebSocket version 13 is supported\n",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let offered = offered_subprotocols(&request);
    let Some(protocol) = Subprotocol::negotiate(offered.iter().map(String::as_str)) else {
        return respond(
            StatusCode::BAD_REQUEST,
            "text/plain",
            format!(
                "no supported subprotocol offered (offered: {:?}); use Sec-WebSocket-Protocol: graphql-transport-ws or graphql-ws\n",
                offered
            ),
        );
    };
    let slot = match ConnectionSlot::admit(gateway) {
        Ok(slot) => slot,
        Err(Admission::Full) => {
            let mut response = respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "connection limit reached: try again later\n",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        Err(Admission::Draining | Admission::Admitted) => {
            return respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "draining: connect to another instance\n",
            );
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let mut context = BTreeMap::new();
    gateway
        .live()
        .context_capture
        .add_headers(&mut context, request.headers());
    *upgrade.lock().unwrap_or_else(|e| e.into_inner()) = Some(PendingUpgrade {
        on_upgrade,
        protocol,
        slot,
        context,
    });
    let accept = async_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol.name()),
    );
    response
}

/// GraphQL over HTTP: one query or mutation per POST, answered with one
/// JSON execution result. Subscriptions belong on the WebSocket.
async fn graphql_post(gateway: &Arc<Gateway>, request: Request<Incoming>) -> Response<Body> {
    // A drain answers this request before it ends (core `Drain`).
    let _in_flight = crate::gateway::RequestSlot::new(gateway);
    let (claims, context) = match request::authorize_request(gateway, &request).await {
        Ok(authorized) => authorized,
        Err(response) => return response,
    };
    let limit_time = gateway.config.timeouts.http_request;
    let work = async {
        let operation = match request::read_operation(gateway, request, "POST /graphql").await {
            Ok(operation) => operation,
            Err(response) => return response,
        };
        run_post(gateway, operation, claims, context, false).await
    };
    timeout(limit_time, work)
        .await
        .unwrap_or_else(|_| timed_out(limit_time))
}

/// GraphQL over HTTP with GET: a query in the query string (`query`,
/// `operationName`, `variables` and `extensions` as JSON text), as
/// Apollo's persisted-queries link sends a hash with
/// `useGETForHashedQueries`. Mutations are refused (405), as the
/// GraphQL-over-HTTP spec requires; auth and bounds are POST's.
async fn graphql_get(gateway: &Arc<Gateway>, request: Request<Incoming>) -> Response<Body> {
    let (claims, context) = match request::authorize_request(gateway, &request).await {
        Ok(authorized) => authorized,
        Err(response) => return response,
    };
    let operation = match request::parse_get_query(request.uri().query().unwrap_or("")) {
        Ok(operation) => operation,
        Err(message) => return graphql_error_response(StatusCode::BAD_REQUEST, &message),
    };
    let limit_time = gateway.config.timeouts.http_request;
    let work = run_post(gateway, operation, claims, context, true);
    timeout(limit_time, work)
        .await
        .unwrap_or_else(|_| timed_out(limit_time))
}

/// The 504 of a POST or GET that outlived `timeouts.http_request`.
fn timed_out(limit_time: std::time::Duration) -> Response<Body> {
    json_response(
        StatusCode::GATEWAY_TIMEOUT,
        &json!({ "errors": [{
            "message": format!("the request took longer than {limit_time:?} (timeouts.http_request)"),
            "extensions": { "code": REQUEST_TIMEOUT_CODE },
        }] }),
    )
}

/// Executes one operation of a POST (or, `via_get`, a GET). The operation
/// task is owned by this request's future: a client that goes away
/// cancels it.
async fn run_post(
    gateway: &Arc<Gateway>,
    request: OperationRequest,
    claims: Map<String, Value>,
    context: RequestContext,
    via_get: bool,
) -> Response<Body> {
    let execution = request::start_execution(gateway, request, claims, context);
    // The upstreams of the same moment as the schema start_execution used.
    let live = gateway.live();
    // `None`: the request did not prepare; its errors are the execution's
    // only output and the operation is not counted.
    let kind = execution.kind();
    if kind == Some(OperationKind::Subscription) {
        return graphql_error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "subscriptions are served over WebSocket at /graphql (graphql-transport-ws or graphql-ws), over SSE or multipart (docs/transports.md), not as a plain JSON request",
        );
    }
    if via_get && kind == Some(OperationKind::Mutation) {
        let mut response = graphql_error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "a mutation cannot be sent with GET: use POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let _live = kind.map(|_| {
        gateway
            .metrics
            .operations_started_total
            .fetch_add(1, Ordering::Relaxed);
        LiveOperation::new(gateway.clone())
    });
    let (tx, rx) = crate::events::bounded(gateway.config.limits.operation_queue);
    let op = OpId(0);
    let _task = tasks::spawn(execute::run_operation(
        execution,
        live.upstreams.clone(),
        op,
        tx,
        Some(gateway.clone()),
    ));
    let mut result: Option<Value> = None;
    loop {
        match rx.recv().await {
            Ok((_, UpstreamEvent::Next(value))) => {
                // A query or mutation has one result; keep the first.
                result.get_or_insert(value);
            }
            Ok((_, event @ UpstreamEvent::NextEncoded(_))) => {
                if let Some(value) = event.next_value() {
                    result.get_or_insert(value);
                }
            }
            Ok((_, UpstreamEvent::Error(errors))) => {
                return json_response(StatusCode::OK, &json!({ "errors": errors }));
            }
            Ok((_, UpstreamEvent::Complete)) | Err(_) => break,
        }
    }
    json_response(
        StatusCode::OK,
        &result.unwrap_or_else(|| json!({ "data": null })),
    )
}

/// Counts an HTTP operation in `terminus_operations` while it runs.
struct LiveOperation(Arc<Gateway>);

impl LiveOperation {
    fn new(gateway: Arc<Gateway>) -> Self {
        gateway.metrics.add_operations(1);
        LiveOperation(gateway)
    }
}

impl Drop for LiveOperation {
    fn drop(&mut self) {
        self.0.metrics.add_operations(-1);
    }
}
