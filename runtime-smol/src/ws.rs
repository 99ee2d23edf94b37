//! One WebSocket connection: the host side of `terminus_core::server`.
//!
//! The task reads frames, upstream events, timer expiries and the drain
//! signal, feeds each to the [`ServerConnection`] state machine, and then
//! does exactly what the machine's effects say until it has none left. The
//! operation tasks live in this task's `operations` table: `Cancel` removes
//! one and dropping it cancels its upstream calls; when the task ends, for
//! any reason including a panic, the table is dropped with it.
//!
//! Every close is the machine's decision (docs/protocol.md, Closing): this
//! module writes the close frame the machine asks for, reports the peer's
//! close frame with its code, reports a frame tungstenite refused as too
//! big (`FrameTooBig`, 1009) and a caught panic (`InternalError`, 4500),
//! and keeps reading after its close frame until the machine's linger
//! deadline or the peer's answer ends the connection.

use crate::config::{PANIC_TRIGGER_OPERATION, PANIC_TRIGGER_OPERATION_TASK};
use crate::execute;
use crate::gateway::{ConnectionSlot, ConnectionView, Gateway, OperationRow};
use crate::request::start_execution;
use crate::tasks;
use crate::timeout::timeout;
use crate::tls::Conn;
use async_channel::{Receiver, Sender};
use async_tungstenite::tungstenite::error::CapacityError;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures_lite::{FutureExt, StreamExt};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use terminus_core::protocol::close;
use terminus_core::server::{AuthVerdict, Effect, FrameViolation, ServerConnection, Subprotocol};
use terminus_core::{OpId, RequestContext, UpstreamEvent};

type Socket = WebSocketStream<Conn>;

/// An event of one operation, on its way to the connection task.
type OpEvent = (OpId, UpstreamEvent);

/// The read buffer of each socket, held for the connection's life (the
/// WebSocket layer allocates it up front) and the most read in one call:
/// small, because memory per idle connection matters more than syscalls
/// per large message (a 64 KiB message takes 128 reads).
const READ_BUFFER_BYTES: usize = 512;

/// The WebSocket layer's own cap on a frame or message, given the core's
/// `max_frame_bytes`: above it, so that the core's size rule decides (and
/// the close handshake stays clean) for anything up to twice the limit;
/// beyond that tungstenite refuses the frame from its header, before
/// buffering it, and the core hears of it as `FrameTooBig`.
fn transport_frame_cap(max_frame_bytes: usize) -> usize {
    max_frame_bytes.saturating_mul(2).max(READ_BUFFER_BYTES)
}

/// Serves one upgraded WebSocket until its state machine ends, then records
/// how it closed.
pub(crate) async fn serve_websocket(
    gateway: Arc<Gateway>,
    stream: Conn,
    already_read: Vec<u8>,
    protocol: Subprotocol,
    peer: SocketAddr,
    slot: ConnectionSlot,
    context: BTreeMap<String, String>,
) {
    let cap = transport_frame_cap(gateway.config.limits.max_frame_bytes);
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        // Frames gather up to this before a write; the connection task
        // flushes once per turn (`poll_io`), and the core bounds what is
        // queued for this client (max_outbound_bytes).
        .write_buffer_size(WRITE_BATCH_BYTES)
        .max_write_buffer_size(
            // A batch, plus the largest frame the core lets through.
            WRITE_BATCH_BYTES
                .saturating_add(gateway.config.limits.max_outbound_bytes)
                .saturating_add(cap),
        )
        .max_message_size(Some(cap))
        .max_frame_size(Some(cap));
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

    // The state machine lives outside the unwind boundary: a panic in the
    // host's code is an input to it (close 4500, every operation cancelled),
    // and the same loop then carries out that close and its linger.
    let mut connection =
        ServerConnection::new(gateway.now(), protocol, gateway.connection_config());
    let mut read_usable = true;
    for attempt in 0.. {
        // Boxed: the driving future is large, and its state lives on the
        // heap instead of being moved through the executor's stack.
        let driven = AssertUnwindSafe(Box::pin(drive(
            &gateway,
            &mut socket,
            &mut connection,
            &mut read_usable,
            &view,
            context.clone(),
        )))
        .catch_unwind()
        .await;
        let Err(panic) = driven else { break };
        // The operations table and its tasks were inside the future and are
        // gone; the socket and the state machine are still ours.
        gateway.metrics.panics_total.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            connection = id,
            %peer,
            panic = %panic_message(&panic),
            close = close::INTERNAL_SERVER_ERROR,
            "connection task panicked; closing it"
        );
        if attempt > 0 {
            // A second panic, while closing: drop the socket.
            break;
        }
        connection.handle_internal_error(gateway.now());
    }
    let close_code = connection.close_code().unwrap_or(close::ABNORMAL_CLOSURE);
    gateway.metrics.record_close(close_code);
    gateway
        .views
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    drop(slot);
    tracing::debug!(connection = id, %peer, code = close_code, "WebSocket closed");
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".to_owned())
}

/// One live operation in the connection's table.
struct Operation {
    /// Dropping this cancels the operation and its upstream calls.
    _task: smol::Task<()>,
    /// Its root fields, for `/admin`.
    field: String,
}

/// Keeps `terminus_operations` equal to the sum of the connections' held
/// operations (live ones and legacy starts queued behind the init),
/// including when a connection task unwinds.
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

/// Publishes the connection's live operations to `/admin`: the core's view
/// of them (`ServerConnection::operations`), labelled with the root fields
/// of each one's prepared operation.
fn publish_rows(
    view: &ConnectionView,
    connection: &ServerConnection,
    operations: &HashMap<OpId, Operation>,
) {
    let rows = connection
        .operations()
        .filter_map(|info| {
            let operation = operations.get(&info.op)?;
            Some(OperationRow {
                id: info.id.to_owned(),
                field: operation.field.clone(),
                started: info.started,
            })
        })
        .collect();
    *view.operations.lock().unwrap_or_else(|e| e.into_inner()) = rows;
}

enum Wake {
    Frame(Option<Result<Message, WsError>>),
    /// Written frames were flushed (the counts are in the [`Writer`]).
    Flushed,
    /// A write or flush failed: the socket is gone.
    WriteFailed,
    Upstream(OpId, UpstreamEvent),
    Timer,
    Shutdown,
}

/// A frame the core asked for, waiting for its turn on the socket.
enum Outbound {
    Text(String),
    Ping,
    Close(CloseFrame),
}

/// The socket's write side, driven by [`poll_io`] next to its read side in
/// the connection task: frames queue here (bounded by the core's
/// `max_outbound_bytes`, which counts them until they are flushed), are
/// handed to the WebSocket layer while it takes them (it writes to the
/// socket in batches of [`WRITE_BATCH_BYTES`]), then flushed once. A socket
/// that does not take bytes holds up nothing but its own queue.
#[derive(Default)]
struct Writer {
    queue: VecDeque<Outbound>,
    /// Text bytes handed to the WebSocket layer since the last completed
    /// flush.
    in_flight: usize,
    /// Text bytes flushed that the core has not been told of yet.
    flushed: usize,
    /// Something was handed over and is not flushed yet.
    unflushed: bool,
    /// Since when bytes have waited for a socket that takes none.
    stalled_since: Option<Instant>,
    /// A write failed: nothing more is written.
    gone: bool,
}

impl Writer {
    fn push(&mut self, frame: Outbound) {
        if !self.gone {
            self.queue.push_back(frame);
        }
    }

    /// Tells the core how many bytes left for the socket.
    fn report(&mut self, connection: &mut ServerConnection, now: terminus_core::Millis) {
        if self.flushed > 0 {
            connection.handle_flushed(now, std::mem::take(&mut self.flushed));
        }
        if self.queue.is_empty() && self.queue.capacity() > 16 {
            // A burst is over: its queue's memory goes back.
            self.queue = VecDeque::new();
        }
    }

    fn write_deadline(&self, write: std::time::Duration) -> Option<Instant> {
        self.stalled_since.map(|since| since + write)
    }
}

/// Bytes the WebSocket layer gathers before it writes them to the socket
/// in one call; a flush writes whatever is gathered.
const WRITE_BATCH_BYTES: usize = 16 * 1024;

/// One step of the socket's I/O: hands every queued frame the WebSocket
/// layer will take to it, flushes once, and reads one message. Never waits
/// on the write side to read, nor the other way round.
fn poll_io(
    socket: &mut Socket,
    writer: &mut Writer,
    read_usable: bool,
    cx: &mut Context<'_>,
) -> Poll<Wake> {
    use futures_sink::Sink;
    while !writer.gone {
        let mut progressed = false;
        while !writer.queue.is_empty() {
            match Pin::new(&mut *socket).poll_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(_)) => {
                    writer.gone = true;
                    return Poll::Ready(Wake::WriteFailed);
                }
                Poll::Ready(Ok(())) => {}
            }
            let message = match writer.queue.pop_front() {
                Some(Outbound::Text(text)) => {
                    writer.in_flight += text.len();
                    Message::text(text)
                }
                Some(Outbound::Ping) => Message::Ping(Vec::new().into()),
                Some(Outbound::Close(frame)) => Message::Close(Some(frame)),
                None => break,
            };
            writer.unflushed = true;
            if Pin::new(&mut *socket).start_send(message).is_err() {
                writer.gone = true;
                return Poll::Ready(Wake::WriteFailed);
            }
        }
        if writer.unflushed {
            match Pin::new(&mut *socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    writer.unflushed = false;
                    writer.flushed += std::mem::take(&mut writer.in_flight);
                    writer.stalled_since = None;
                    progressed = true;
                }
                Poll::Ready(Err(_)) => {
                    writer.gone = true;
                    return Poll::Ready(Wake::WriteFailed);
                }
                Poll::Pending => {
                    writer.stalled_since.get_or_insert_with(Instant::now);
                }
            }
        }
        // A flush made room: write what queued up behind it.
        if !progressed || writer.queue.is_empty() {
            break;
        }
    }
    if read_usable {
        if let Poll::Ready(frame) = Pin::new(&mut *socket).poll_next(cx) {
            return Poll::Ready(Wake::Frame(frame));
        }
    }
    if writer.flushed > 0 {
        return Poll::Ready(Wake::Flushed);
    }
    Poll::Pending
}

/// The core's name for a frame tungstenite refused as breaking RFC 6455;
/// `None` for an error that means the socket is gone.
fn frame_violation(error: &WsError) -> Option<FrameViolation> {
    use async_tungstenite::tungstenite::error::ProtocolError as P;
    Some(match error {
        WsError::Utf8(_) => FrameViolation::InvalidUtf8,
        WsError::Protocol(P::UnmaskedFrameFromClient) => FrameViolation::Unmasked,
        WsError::Protocol(P::NonZeroReservedBits) => FrameViolation::ReservedBits,
        WsError::Protocol(P::UnknownControlFrameType(_) | P::UnknownDataFrameType(_)) => {
            FrameViolation::UnknownOpcode
        }
        WsError::Protocol(P::ControlFrameTooBig) => FrameViolation::ControlFrameTooBig,
        WsError::Protocol(P::FragmentedControlFrame) => FrameViolation::FragmentedControlFrame,
        WsError::Protocol(P::UnexpectedContinueFrame | P::ExpectedFragment(_)) => {
            FrameViolation::BadContinuation
        }
        WsError::Protocol(
            P::ResetWithoutClosingHandshake | P::SendAfterClosing | P::ReceivedAfterClosing,
        ) => return None,
        WsError::Protocol(_) => FrameViolation::Malformed,
        _ => return None,
    })
}

/// The most upstream events handled in one turn before the turn's frames
/// are written (and flushed once).
const EVENTS_PER_TURN: usize = 256;

/// Drives `connection` until it is terminated: feeds it frames, upstream
/// events, timer expiries and the drain signal, and carries out its effects.
/// `read_usable` turns false when the WebSocket layer can no longer parse
/// what the peer sends (a frame above its cap, a protocol violation); the
/// linger then ends at its deadline.
async fn drive(
    gateway: &Arc<Gateway>,
    socket: &mut Socket,
    connection: &mut ServerConnection,
    read_usable: &mut bool,
    view: &ConnectionView,
    mut context: BTreeMap<String, String>,
) {
    // What the connection's operations forward as metadata: the upgrade
    // request's headers, then the connection_init fields (grpc/metadata.rs).
    let mut shared_context: RequestContext = Arc::new(context.clone());
    let config = &gateway.config;
    // The channel from the operation tasks exists only while there are
    // some: an idle connection holds no queue.
    let mut events: Option<(Sender<OpEvent>, Receiver<OpEvent>)> = None;
    let mut operations: HashMap<OpId, Operation> = HashMap::new();
    let mut gauge = OperationsGauge {
        gateway,
        reported: 0,
    };
    let write = config.timeouts.write;
    let mut writer = Writer::default();
    // The accepted token's claims (`[auth.jwt]`), bound by `:auth.<claim>`.
    let mut claims: Option<Arc<serde_json::Map<String, Value>>> = None;
    loop {
        // Do everything the machine asked for, until it asks for nothing.
        let mut table_changed = false;
        while let Some(effect) = connection.poll_effect() {
            match effect {
                Effect::SendText(text) => writer.push(Outbound::Text(text)),
                Effect::SendPing => writer.push(Outbound::Ping),
                Effect::Authenticate { payload } => {
                    gateway
                        .live()
                        .context_capture
                        .add_init(&mut context, payload.as_ref());
                    let verdict = match &gateway.jwt {
                        Some(jwt) => {
                            // Boxed: once per connection, and large.
                            let (verdict, verified) =
                                Box::pin(jwt.authenticate(gateway.now(), payload.as_ref())).await;
                            claims = verified.map(|v| Arc::new(v.claims));
                            verdict
                        }
                        None => authenticate(&config.auth.tokens, payload.as_ref()),
                    };
                    if let Some(claims) = &claims {
                        gateway
                            .live()
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
                    let panic_for_test = config.testing.panic_trigger
                        && request.operation_name.as_deref() == Some(PANIC_TRIGGER_OPERATION_TASK);
                    // Persisted queries resolve here, as on every transport.
                    let mut execution =
                        start_execution(gateway, request, claims, shared_context.clone());
                    // What is ready at once (a request that did not prepare
                    // ends here with its errors) goes to the connection now.
                    while let Some(event) = execution.poll_output() {
                        connection.handle_upstream(gateway.now(), op, event);
                    }
                    if !execution.is_finished() {
                        let field = execution.root_keys().join(", ");
                        let (events_tx, _) = events.get_or_insert_with(|| {
                            async_channel::bounded(config.limits.operation_queue)
                        });
                        let task = tasks::spawn(execute::run_operation_guarded(
                            gateway.clone(),
                            execution,
                            op,
                            events_tx.clone(),
                            panic_for_test,
                        ));
                        operations.insert(op, Operation { _task: task, field });
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
                Effect::Close { code, reason } => writer.push(Outbound::Close(CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                })),
            }
            gauge.set(connection.held_operations());
        }
        gauge.set(connection.held_operations());
        if table_changed {
            publish_rows(view, connection, &operations);
        }
        if operations.is_empty() {
            // Every operation task (and its sender) is gone: so is the queue.
            events = None;
        }
        if connection.is_terminated() {
            return;
        }

        // Wait for the next input: the socket (its write side progressing,
        // or a frame read), upstream events, timers, the drain signal.
        // Upstream events and the drain signal matter only while the
        // connection is open; while it closes, only the peer's close frame,
        // the last writes and the linger's deadline do.
        let open = connection.is_open();
        let deadline = connection.poll_timeout().map(|at| gateway.instant_at(at));
        let write_deadline = writer.write_deadline(write);
        let usable = *read_usable;
        let io = std::future::poll_fn(|cx| poll_io(socket, &mut writer, usable, cx));
        let upstream = async {
            match &events {
                Some((_, rx)) if open => match rx.recv().await {
                    Ok((op, event)) => Wake::Upstream(op, event),
                    // Never: the sender lives in this function.
                    Err(_) => std::future::pending().await,
                },
                _ => std::future::pending().await,
            }
        };
        let timer = async {
            match [deadline, write_deadline].into_iter().flatten().min() {
                Some(at) => smol::Timer::at(at).await,
                None => smol::Timer::never().await,
            };
            Wake::Timer
        };
        let shutdown = async {
            if !open {
                std::future::pending::<()>().await;
            }
            // The channel is closed (not sent to) when drain begins.
            let _ = gateway.shutdown.recv().await;
            Wake::Shutdown
        };
        let wake = io.or(upstream).or(timer).or(shutdown).await;
        let now = gateway.now();
        match wake {
            Wake::Flushed => {}
            Wake::WriteFailed => connection.handle_transport_closed(now, close::ABNORMAL_CLOSURE),
            Wake::Frame(Some(Ok(message))) => match message {
                Message::Text(text) => connection.handle_text(now, text.as_str()),
                Message::Binary(data) => connection.handle_binary(now, &data),
                Message::Pong(_) => connection.handle_transport_pong(now),
                // tungstenite queues the pong and sends it with the next read or write.
                Message::Ping(_) => {}
                Message::Close(frame) => {
                    let code = frame.map_or(close::NO_STATUS_RECEIVED, |f| u16::from(f.code));
                    if connection.is_open() {
                        // The peer closed first: tungstenite queued the
                        // answer, and the next read writes it (then ends,
                        // as the server's side of a finished handshake).
                        let _ = timeout(write, socket.next()).await;
                    }
                    writer.gone = true;
                    connection.handle_transport_closed(now, code);
                }
                Message::Frame(_) => {}
            },
            Wake::Frame(Some(Err(WsError::Capacity(error)))) => {
                tracing::debug!(%error, "frame above the WebSocket layer's cap");
                let bytes = match error {
                    CapacityError::MessageTooLong { size, .. } => size,
                    CapacityError::TooManyHeaders => 0,
                };
                // The rest of that frame is still unread: nothing after it
                // can be parsed, so stop reading; the linger's deadline ends
                // the connection after the 1009 the core decides on.
                *read_usable = false;
                connection.handle_frame_too_big(now, bytes);
            }
            Wake::Frame(Some(Err(error))) => match frame_violation(&error) {
                Some(violation) => {
                    tracing::debug!(%error, ?violation, "WebSocket protocol violation");
                    // The WebSocket layer reads nothing after an error: the
                    // linger ends at its deadline after the core's close.
                    *read_usable = false;
                    connection.handle_frame_violation(now, violation);
                }
                None => {
                    writer.gone = true;
                    connection.handle_transport_closed(now, close::ABNORMAL_CLOSURE);
                }
            },
            Wake::Frame(None) => {
                writer.gone = true;
                connection.handle_transport_closed(now, close::ABNORMAL_CLOSURE);
            }
            Wake::Upstream(op, event) => {
                // Everything else already waiting goes in the same turn, so
                // its frames are written together and flushed once.
                let mut next = Some((op, event));
                let mut ended = false;
                for _ in 0..EVENTS_PER_TURN {
                    let Some((op, event)) = next.take() else {
                        break;
                    };
                    ended |= event.is_terminal() && operations.remove(&op).is_some();
                    connection.handle_upstream(now, op, event);
                    next = events.as_ref().and_then(|(_, rx)| rx.try_recv().ok());
                }
                if let Some((op, event)) = next {
                    ended |= event.is_terminal() && operations.remove(&op).is_some();
                    connection.handle_upstream(now, op, event);
                }
                if ended {
                    publish_rows(view, connection, &operations);
                }
            }
            Wake::Timer => {
                if writer
                    .write_deadline(write)
                    .is_some_and(|at| at <= Instant::now())
                {
                    // The client took no bytes for `timeouts.write`: gone.
                    writer.gone = true;
                    connection.handle_transport_closed(now, close::ABNORMAL_CLOSURE);
                }
                connection.handle_timeout(now);
            }
            Wake::Shutdown => connection.handle_shutdown(now),
        }
        writer.report(connection, gateway.now());
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
}
