//! One WebSocket connection: the host side of `terminus_core::server`.
//!
//! The task reads frames, upstream events, timer expiries and the drain
//! signal, feeds each to the [`ServerConnection`] state machine, and then
//! does exactly what the machine's effects say until it has none left. The
//! operation tasks live in this task's `operations` table: `Cancel` removes
//! one and dropping it cancels its upstream calls; when the task ends, for
//! any reason including a panic, the table is dropped with it.

use crate::config::{PANIC_TRIGGER_OPERATION, PANIC_TRIGGER_OPERATION_TASK};
use crate::execute;
use crate::http::ConnectionSlot;
use crate::server::{ConnectionView, Gateway, OperationRow};
use crate::tasks;
use crate::tls::Conn;
use async_channel::{Receiver, Sender};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures_lite::{FutureExt, StreamExt};
use graphql_parser::query::{Definition, OperationDefinition, Selection};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use terminus_core::graphql::Execution;
use terminus_core::server::{AuthVerdict, Effect, ServerConnection, Subprotocol};
use terminus_core::{OpId, OperationRequest, RequestContext, UpstreamEvent};

type Socket = WebSocketStream<Conn>;

/// An event of one operation, on its way to the connection task.
type OpEvent = (OpId, UpstreamEvent);

/// The read buffer of each socket: small, because memory per idle
/// connection matters more than syscalls per large message.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Close code for an internal error (a caught panic).
const CLOSE_INTERNAL_ERROR: u16 = 4500;
/// Close code for a message above `max_frame_bytes`.
const CLOSE_TOO_BIG: u16 = 1009;

/// Serves one upgraded WebSocket until it closes, then records how.
pub(crate) async fn serve_websocket(
    gateway: Arc<Gateway>,
    stream: Conn,
    already_read: Vec<u8>,
    protocol: Subprotocol,
    peer: SocketAddr,
    slot: ConnectionSlot,
    context: BTreeMap<String, String>,
) {
    let frame_limit = gateway.config.limits.max_frame_bytes;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        // Write each frame straight through: the core already bounds what is
        // queued for this client (max_outbound_bytes).
        .write_buffer_size(0)
        .max_write_buffer_size(frame_limit.saturating_mul(2).max(READ_BUFFER_BYTES))
        .max_message_size(Some(frame_limit))
        .max_frame_size(Some(frame_limit));
    let mut socket = if already_read.is_empty() {
        WebSocketStream::from_raw_socket(stream, Role::Server, Some(ws_config)).await
    } else {
        WebSocketStream::from_partially_read(stream, already_read, Role::Server, Some(ws_config))
            .await
    };
    let id = gateway.next_connection_id();
    let view = Arc::new(ConnectionView {
        peer,
        protocol: protocol.name(),
        opened: Instant::now(),
        operations: Mutex::new(Vec::new()),
    });
    gateway
        .views
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, view.clone());
    tracing::debug!(connection = id, %peer, protocol = protocol.name(), "WebSocket open");

    let driven = AssertUnwindSafe(drive(&gateway, &mut socket, protocol, &view, context))
        .catch_unwind()
        .await;
    let close_code = match driven {
        Ok(code) => code,
        Err(panic) => {
            // The state machine, the operations table and its tasks were
            // inside the future and are gone; the socket is still ours.
            let message = panic_message(&panic);
            gateway.metrics.panics_total.fetch_add(1, Ordering::Relaxed);
            tracing::error!(connection = id, %peer, panic = %message, "connection task panicked; closing it with 4500");
            let frame = CloseFrame {
                code: CloseCode::from(CLOSE_INTERNAL_ERROR),
                reason: "Internal server error".into(),
            };
            let _ = bounded(gateway.config.timeouts.write, socket.close(Some(frame))).await;
            Some(CLOSE_INTERNAL_ERROR)
        }
    };
    gateway.metrics.record_close(close_code);
    linger(&mut socket, gateway.config.timeouts.close_linger).await;
    gateway
        .views
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    drop(slot);
    tracing::debug!(connection = id, %peer, code = ?close_code, "WebSocket closed");
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".to_owned())
}

/// After our close frame: read until the client's close frame (or the end)
/// so the kernel does not reset the socket under unread data, bounded by
/// `close_linger`.
async fn linger(socket: &mut Socket, limit: Duration) {
    let drain = async {
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = bounded(limit, drain).await;
}

/// Awaits `future` for at most `limit`; `None` when the time ran out.
async fn bounded<T>(limit: Duration, future: impl std::future::Future<Output = T>) -> Option<T> {
    async { Some(future.await) }
        .or(async {
            smol::Timer::after(limit).await;
            None
        })
        .await
}

/// One live operation in the connection's table.
struct Operation {
    /// Dropping this cancels the operation and its upstream calls.
    _task: smol::Task<()>,
    row: OperationRow,
}

/// Keeps `terminus_operations` equal to the sum of the connections' live
/// operations, including when a connection task unwinds.
struct OperationsGauge<'a> {
    gateway: &'a Gateway,
    reported: i64,
}

impl OperationsGauge<'_> {
    fn set(&mut self, live: usize) {
        let live = i64::try_from(live).unwrap_or(i64::MAX);
        if live != self.reported {
            self.gateway.metrics.add_operations(live - self.reported);
            self.reported = live;
        }
    }
}

impl Drop for OperationsGauge<'_> {
    fn drop(&mut self) {
        self.gateway.metrics.add_operations(-self.reported);
    }
}

enum Wake {
    Frame(Option<Result<Message, WsError>>),
    Upstream(OpId, UpstreamEvent),
    Timer,
    Shutdown,
}

/// Drives the connection until its state machine is terminated. Returns
/// the close code the gateway sent, or the client's, or `None` when the
/// socket ended without one.
async fn drive(
    gateway: &Arc<Gateway>,
    socket: &mut Socket,
    protocol: Subprotocol,
    view: &ConnectionView,
    mut context: BTreeMap<String, String>,
) -> Option<u16> {
    // What the connection's operations forward as metadata: the upgrade
    // request's headers, then the connection_init fields (grpc/metadata.rs).
    let mut shared_context: RequestContext = Arc::new(context.clone());
    let config = &gateway.config;
    let mut connection =
        ServerConnection::new(gateway.now(), protocol, gateway.connection_config());
    let (events_tx, events_rx): (Sender<OpEvent>, Receiver<OpEvent>) =
        async_channel::bounded(config.limits.operation_queue);
    let mut operations: HashMap<OpId, Operation> = HashMap::new();
    let mut gauge = OperationsGauge {
        gateway,
        reported: 0,
    };
    let mut shutdown_seen = false;
    let mut close_code: Option<u16> = None;
    let mut transport_gone = false;
    // The accepted token's claims (`[auth.jwt]`), bound by `:auth.<claim>`.
    let mut claims: Option<Arc<serde_json::Map<String, Value>>> = None;
    loop {
        // Do everything the machine asked for, until it asks for nothing.
        let mut table_changed = false;
        while let Some(effect) = connection.poll_effect() {
            match effect {
                Effect::SendText(text) => {
                    if transport_gone {
                        continue;
                    }
                    let bytes = text.len();
                    match bounded(config.timeouts.write, socket.send(Message::text(text))).await {
                        Some(Ok(())) => connection.handle_flushed(gateway.now(), bytes),
                        _ => {
                            transport_gone = true;
                            connection.handle_transport_closed(gateway.now());
                        }
                    }
                }
                Effect::SendPing => {
                    if transport_gone {
                        continue;
                    }
                    let ping = Message::Ping(Vec::new().into());
                    if !matches!(
                        bounded(config.timeouts.write, socket.send(ping)).await,
                        Some(Ok(()))
                    ) {
                        transport_gone = true;
                        connection.handle_transport_closed(gateway.now());
                    }
                }
                Effect::Authenticate { payload } => {
                    gateway
                        .context_capture
                        .add_init(&mut context, payload.as_ref());
                    let verdict = match &gateway.jwt {
                        Some(jwt) => {
                            let (verdict, verified) =
                                jwt.authenticate(gateway.now(), payload.as_ref()).await;
                            claims = verified.map(|v| Arc::new(v.claims));
                            verdict
                        }
                        None => authenticate(&config.auth.tokens, payload.as_ref()),
                    };
                    if let Some(claims) = &claims {
                        gateway
                            .context_capture
                            .add_claims(&mut context, Some(&Value::Object((**claims).clone())));
                    }
                    shared_context = Arc::new(context.clone());
                    if matches!(verdict, AuthVerdict::Reject { .. }) {
                        gateway
                            .metrics
                            .auth_rejected_total
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    connection.handle_auth(gateway.now(), verdict);
                }
                Effect::Start { op, request } => {
                    gateway
                        .metrics
                        .operations_started_total
                        .fetch_add(1, Ordering::Relaxed);
                    if config.testing.panic_trigger
                        && request.operation_name.as_deref() == Some(PANIC_TRIGGER_OPERATION)
                    {
                        panic!("testing.panic_trigger: operation {PANIC_TRIGGER_OPERATION} asked this connection to panic");
                    }
                    let claims = claims
                        .as_ref()
                        .map(|claims| claims.as_ref().clone())
                        .unwrap_or_default();
                    let mut execution = Execution::start_with(
                        &gateway.schema,
                        &request,
                        &gateway.graphql_limits,
                        claims,
                        shared_context.clone(),
                    );
                    // What is ready at once (a request that did not prepare
                    // ends here with its errors) goes to the connection now.
                    while let Some(event) = execution.poll_output() {
                        connection.handle_upstream(gateway.now(), op, event);
                    }
                    if !execution.is_finished() {
                        let field = execution.root_keys().join(", ");
                        let panic_for_test = config.testing.panic_trigger
                            && request.operation_name.as_deref()
                                == Some(PANIC_TRIGGER_OPERATION_TASK);
                        let task = tasks::spawn(execute::run_operation_guarded(
                            gateway.clone(),
                            execution,
                            op,
                            events_tx.clone(),
                            panic_for_test,
                        ));
                        operations.insert(
                            op,
                            Operation {
                                _task: task,
                                row: OperationRow {
                                    id: request.id.clone(),
                                    field: if field.is_empty() {
                                        root_field(&request)
                                    } else {
                                        field
                                    },
                                    started: Instant::now(),
                                },
                            },
                        );
                        table_changed = true;
                    }
                }
                Effect::Cancel { op } => {
                    gateway
                        .metrics
                        .operations_cancelled_total
                        .fetch_add(1, Ordering::Relaxed);
                    table_changed |= operations.remove(&op).is_some();
                }
                Effect::Close { code, reason } => {
                    close_code.get_or_insert(code);
                    if !transport_gone {
                        let frame = CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        };
                        let _ = bounded(config.timeouts.write, socket.close(Some(frame))).await;
                    }
                }
            }
            gauge.set(connection.live_operations());
        }
        gauge.set(connection.live_operations());
        if table_changed {
            let rows = operations.values().map(|o| o.row.clone()).collect();
            *view.operations.lock().unwrap_or_else(|e| e.into_inner()) = rows;
        }
        if connection.is_terminated() {
            return close_code;
        }

        // Wait for the next input.
        let deadline = connection.poll_timeout();
        let read = async { Wake::Frame(socket.next().await) };
        let upstream = async {
            match events_rx.recv().await {
                Ok((op, event)) => Wake::Upstream(op, event),
                // Never: `events_tx` lives in this function.
                Err(_) => std::future::pending().await,
            }
        };
        let timer = async {
            match deadline {
                Some(at) => smol::Timer::at(gateway.instant_at(at)).await,
                None => smol::Timer::never().await,
            };
            Wake::Timer
        };
        let shutdown = async {
            if shutdown_seen {
                std::future::pending::<()>().await;
            }
            // The channel is closed (not sent to) when drain begins.
            let _ = gateway.shutdown.recv().await;
            Wake::Shutdown
        };
        let wake = if transport_gone {
            upstream.or(timer).or(shutdown).await
        } else {
            read.or(upstream).or(timer).or(shutdown).await
        };
        let now = gateway.now();
        match wake {
            Wake::Frame(Some(Ok(message))) => match message {
                Message::Text(text) => connection.handle_text(now, text.as_str()),
                Message::Binary(data) => connection.handle_binary(now, &data),
                Message::Pong(_) => connection.handle_transport_pong(now),
                // tungstenite queues the pong and sends it with the next read or write.
                Message::Ping(_) => {}
                Message::Close(frame) => {
                    close_code.get_or_insert_with(|| frame.map_or(1005, |f| u16::from(f.code)));
                    transport_gone = true;
                    connection.handle_transport_closed(now);
                }
                Message::Frame(_) => {}
            },
            Wake::Frame(Some(Err(WsError::Capacity(error)))) => {
                tracing::debug!(%error, "message above max_frame_bytes");
                close_code.get_or_insert(CLOSE_TOO_BIG);
                let frame = CloseFrame {
                    code: CloseCode::from(CLOSE_TOO_BIG),
                    reason: "Message too big".into(),
                };
                let _ = bounded(config.timeouts.write, socket.close(Some(frame))).await;
                transport_gone = true;
                connection.handle_transport_closed(now);
            }
            Wake::Frame(Some(Err(_))) | Wake::Frame(None) => {
                transport_gone = true;
                connection.handle_transport_closed(now);
            }
            Wake::Upstream(op, event) => {
                if event.is_terminal() {
                    operations.remove(&op);
                    let rows = operations.values().map(|o| o.row.clone()).collect();
                    *view.operations.lock().unwrap_or_else(|e| e.into_inner()) = rows;
                }
                connection.handle_upstream(now, op, event);
            }
            Wake::Timer => connection.handle_timeout(now),
            Wake::Shutdown => {
                shutdown_seen = true;
                connection.handle_shutdown(now);
            }
        }
    }
}

/// The `auth.tokens` check: every init is accepted when no tokens are
/// configured; otherwise the init payload must be `{"token": "<a configured token>"}`.
pub fn authenticate(tokens: &[String], payload: Option<&Value>) -> AuthVerdict {
    if tokens.is_empty() {
        return AuthVerdict::Accept { ack_payload: None };
    }
    let offered = payload.and_then(|p| p.get("token")).and_then(Value::as_str);
    match offered {
        Some(token) if tokens.iter().any(|t| t == token) => {
            AuthVerdict::Accept { ack_payload: None }
        }
        Some(_) => AuthVerdict::Reject {
            reason: "invalid token".to_owned(),
        },
        None => AuthVerdict::Reject {
            reason: "connection_init payload needs a token".to_owned(),
        },
    }
}

/// The first root field of the selected operation, for `/admin` when the
/// prepared operation has no keys to show.
fn root_field(request: &OperationRequest) -> String {
    let Ok(document) = graphql_parser::parse_query::<String>(&request.query) else {
        return String::new();
    };
    for definition in document.definitions {
        let (name, selection_set) = match definition {
            Definition::Operation(OperationDefinition::Query(q)) => (q.name, q.selection_set),
            Definition::Operation(OperationDefinition::Subscription(s)) => {
                (s.name, s.selection_set)
            }
            Definition::Operation(OperationDefinition::Mutation(m)) => (m.name, m.selection_set),
            Definition::Operation(OperationDefinition::SelectionSet(s)) => (None, s),
            Definition::Fragment(_) => continue,
        };
        if request.operation_name.is_some() && name != request.operation_name {
            continue;
        }
        for item in selection_set.items {
            if let Selection::Field(field) = item {
                return field.name;
            }
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_gate_init_only_when_configured() {
        assert!(matches!(
            authenticate(&[], None),
            AuthVerdict::Accept { .. }
        ));
        let tokens = vec!["s3cret".to_owned()];
        assert!(matches!(
            authenticate(&tokens, Some(&json!({"token": "s3cret"}))),
            AuthVerdict::Accept { .. }
        ));
        assert!(matches!(
            authenticate(&tokens, Some(&json!({"token": "nope"}))),
            AuthVerdict::Reject { .. }
        ));
        assert!(matches!(
            authenticate(&tokens, None),
            AuthVerdict::Reject { .. }
        ));
    }

    #[test]
    fn root_field_follows_the_operation_name() {
        let request = OperationRequest {
            id: "1".into(),
            query: "query A { hello } subscription B { ticks(everyMs: 5) { seq } }".into(),
            operation_name: Some("B".into()),
            variables: Default::default(),
            extensions: Default::default(),
        };
        assert_eq!(root_field(&request), "ticks");
    }
}
