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
use crate::events::{Receiver, Sender};
use crate::execute;
use crate::gateway::{ConnectionSlot, ConnectionView, Gateway, OperationRow};
use crate::request::start_execution;
use crate::tasks;
use crate::tls::Conn;
use async_tungstenite::tungstenite::error::CapacityError;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures_lite::{FutureExt, Stream};
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
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            // Nothing waits: the queue's memory goes back (an idle
            // connection holds none).
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

/// Opens the WebSocket on an upgraded connection: the task state that
/// [`WebSocketTask`] then drives until the state machine ends.
pub(crate) async fn open(
    gateway: Arc<Gateway>,
    stream: Conn,
    already_read: Vec<u8>,
    protocol: Subprotocol,
    peer: SocketAddr,
    slot: ConnectionSlot,
    context: BTreeMap<String, String>,
) -> WebSocketTask {
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
    let socket = if already_read.is_empty() {
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
    let connection = ServerConnection::new(gateway.now(), protocol, gateway.connection_config());
    WebSocketTask {
        shutdown: gateway.shutdown.clone(),
        events: None,
        host: Host {
            gateway,
            socket,
            connection,
            view,
            id,
            slot: Some(slot),
            timer: smol::Timer::never(),
            timer_at: None,
            read_usable: true,
            panics: 0,
            finished: false,
            drive: Drive::new(context),
        },
    }
}

pin_project_lite::pin_project! {
/// One WebSocket connection, polled by hand: the state an idle connection
/// holds is these fields and nothing else (no nested futures, each with
/// its own copies of its arguments), stored once, inline in the
/// connection's task (issue 12, item 5; docs/BENCHMARKS.md, "Lean
/// connections").
///
/// Each poll runs [`WebSocketTask::step`] inside an unwind boundary. The
/// state machine and the socket live outside what a panic throws away: a
/// panic in the host's code drops the [`Drive`] state (the operations
/// table, so every operation task is cancelled, and the outbound queue),
/// is an input to the machine (close 4500, every operation cancelled), and
/// the same loop then carries out that close and its linger. A second
/// panic drops the socket.
pub(crate) struct WebSocketTask {
        host: Host,
        // The drain signal: the gateway closes the channel when drain
        // begins. (Pinned, as the channel's receivers are.)
        #[pin]
        shutdown: async_channel::Receiver<()>,
        // The receiving end of `Drive::events`.
        #[pin]
        events: Option<Receiver<OpEvent>>,
    }
}

/// What [`WebSocketTask`] holds besides its channels' receivers.
struct Host {
    gateway: Arc<Gateway>,
    socket: Socket,
    connection: ServerConnection,
    view: Arc<ConnectionView>,
    id: u64,
    /// Held until the connection ends (the drain machine counts it).
    slot: Option<ConnectionSlot>,
    /// The one timer: the machine's deadline, the write deadline, or the
    /// bound on the answer to the peer's close.
    timer: smol::Timer,
    /// Where `timer` is set; `None` when it is not (or has fired).
    timer_at: Option<Instant>,
    /// False once the WebSocket layer can no longer parse what the peer
    /// sends (a frame above its cap, a protocol violation); the linger
    /// then ends at its deadline.
    read_usable: bool,
    /// Panics caught so far.
    panics: u8,
    /// The close is recorded and the slot given back.
    finished: bool,
    drive: Drive,
}

/// What the host keeps beside the machine between two inputs; a caught
/// panic throws it away (see [`WebSocketTask`]).
struct Drive {
    /// What the connection's operations forward as metadata: the upgrade
    /// request's headers, then the connection_init fields
    /// (grpc/metadata.rs).
    context: BTreeMap<String, String>,
    /// `context` as the operations share it, made at the first start
    /// after it last changed.
    shared_context: Option<RequestContext>,
    /// The channel from the operation tasks, only while there are some:
    /// an idle connection holds no queue.
    events: Option<Sender<OpEvent>>,
    operations: HashMap<OpId, Operation>,
    /// What `terminus_operations` counts for this connection.
    reported_operations: i64,
    writer: Writer,
    /// The accepted token's claims (`[auth.jwt]`), bound by `:auth.<claim>`.
    claims: Option<Arc<serde_json::Map<String, Value>>>,
    /// The operations table changed since `/admin`'s rows were published.
    table_changed: bool,
    waiting: Waiting,
}

type Verifying =
    Pin<Box<dyn std::future::Future<Output = (AuthVerdict, Option<crate::jwt::Verified>)> + Send>>;

/// A wait in the middle of handling one input.
enum Waiting {
    /// None: the task waits for the next input.
    Input,
    /// `[auth.jwt]` is checking the init's token; nothing else is done
    /// until it answers. Boxed: once per connection, and large.
    Auth(Verifying),
    /// The peer closed first: tungstenite queued the answer, and the next
    /// read writes it (then ends, as the server's side of a finished
    /// handshake); bounded by `until`. Then the machine hears of the close.
    CloseAnswer {
        code: u16,
        at: terminus_core::Millis,
        until: Instant,
    },
}

impl Drive {
    fn new(context: BTreeMap<String, String>) -> Self {
        Drive {
            context,
            shared_context: None,
            events: None,
            operations: HashMap::new(),
            reported_operations: 0,
            writer: Writer::default(),
            claims: None,
            table_changed: false,
            waiting: Waiting::Input,
        }
    }

    /// Keeps `terminus_operations` equal to the sum of the connections'
    /// held operations (live ones and legacy starts queued behind the
    /// init).
    fn count_operations(&mut self, gateway: &Gateway, live: usize) {
        let live = i64::try_from(live).unwrap_or(i64::MAX);
        if live != self.reported_operations {
            gateway
                .metrics
                .add_operations(live - self.reported_operations);
            self.reported_operations = live;
        }
    }

    /// Uncounts this state's operations; dropping it then cancels them.
    fn release(&mut self, gateway: &Gateway) {
        self.count_operations(gateway, 0);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Dropped before it finished (the server's table went away): the
        // operations are cancelled with the state and uncounted here.
        self.drive.release(&self.gateway);
        if !self.finished {
            self.forget_view();
        }
    }
}

impl std::future::Future for WebSocketTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let host = this.host;
        while !host.finished {
            let stepped = std::panic::catch_unwind(AssertUnwindSafe(|| {
                host.step(cx, this.shutdown.as_mut(), this.events.as_mut())
            }));
            match stepped {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(())) => host.finish(),
                Err(panic) => {
                    // The operations table and its tasks go with the drive
                    // state; the socket and the state machine are still ours.
                    host.drive.release(&host.gateway);
                    let context = std::mem::take(&mut host.drive.context);
                    host.drive = Drive::new(context);
                    this.events.set(None);
                    host.gateway
                        .metrics
                        .panics_total
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        connection = host.id,
                        peer = %host.view.peer,
                        panic = %panic_message(&panic),
                        close = close::INTERNAL_SERVER_ERROR,
                        "connection task panicked; closing it"
                    );
                    if host.panics > 0 {
                        // A second panic, while closing: drop the socket.
                        host.finish();
                    } else {
                        host.panics += 1;
                        host.connection.handle_internal_error(host.gateway.now());
                    }
                }
            }
        }
        Poll::Ready(())
    }
}

impl Host {
    /// Records how the connection closed and gives its slot back.
    fn finish(&mut self) {
        self.finished = true;
        self.drive.release(&self.gateway);
        self.drive = Drive::new(BTreeMap::new());
        let close_code = self
            .connection
            .close_code()
            .unwrap_or(close::ABNORMAL_CLOSURE);
        self.gateway.metrics.record_close(close_code);
        self.forget_view();
        self.slot.take();
        tracing::debug!(connection = self.id, peer = %self.view.peer, code = close_code, "WebSocket closed");
    }

    fn forget_view(&self) {
        self.gateway
            .views
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }

    /// Sets the timer to `at` (none: never) and polls it.
    fn poll_timer(&mut self, at: Option<Instant>, cx: &mut Context<'_>) -> Poll<()> {
        if at != self.timer_at {
            match at {
                Some(at) => self.timer.set_at(at),
                None => self.timer = smol::Timer::never(),
            }
            self.timer_at = at;
        }
        if at.is_none() {
            return Poll::Pending;
        }
        match Pin::new(&mut self.timer).poll(cx) {
            Poll::Ready(_) => {
                // A fired timer is spent: set it again next time.
                self.timer_at = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Drives the machine until it is terminated (`Ready`) or every input
    /// it waits for is pending: feeds it frames, upstream events, timer
    /// expiries and the drain signal, and carries out its effects.
    fn step(
        &mut self,
        cx: &mut Context<'_>,
        mut shutdown: Pin<&mut async_channel::Receiver<()>>,
        mut events: Pin<&mut Option<Receiver<OpEvent>>>,
    ) -> Poll<()> {
        loop {
            match &mut self.drive.waiting {
                Waiting::Input => {}
                Waiting::Auth(verifying) => {
                    let Poll::Ready((verdict, verified)) = verifying.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    self.drive.waiting = Waiting::Input;
                    self.drive.claims = verified.map(|v| Arc::new(v.claims));
                    authenticated(
                        &self.gateway,
                        &mut self.connection,
                        &mut self.drive,
                        verdict,
                    );
                }
                Waiting::CloseAnswer { code, at, until } => {
                    let (code, at, until) = (*code, *at, *until);
                    let answered = Pin::new(&mut self.socket).poll_next(cx).is_ready()
                        || self.poll_timer(Some(until), cx).is_ready();
                    if !answered {
                        return Poll::Pending;
                    }
                    self.drive.waiting = Waiting::Input;
                    self.drive.writer.gone = true;
                    self.connection.handle_transport_closed(at, code);
                    self.drive
                        .writer
                        .report(&mut self.connection, self.gateway.now());
                }
            }
            // Do everything the machine asked for, until it asks for
            // nothing (or a token check must answer first).
            if !self.run_effects(events.as_mut()) {
                continue;
            }
            let held = self.connection.held_operations();
            self.drive.count_operations(&self.gateway, held);
            if std::mem::take(&mut self.drive.table_changed) {
                publish_rows(&self.view, &self.connection, &self.drive.operations);
            }
            if self.drive.operations.is_empty() {
                // Every operation task (and its sender) is gone: so is the queue.
                self.drive.events = None;
                events.set(None);
            }
            if self.connection.is_terminated() {
                return Poll::Ready(());
            }
            let wake = match self.poll_wake(cx, shutdown.as_mut(), events.as_mut()) {
                Poll::Ready(wake) => wake,
                Poll::Pending => return Poll::Pending,
            };
            self.handle_wake(wake, events.as_ref().get_ref().as_ref());
            self.drive
                .writer
                .report(&mut self.connection, self.gateway.now());
        }
    }

    /// The next input: the socket (its write side progressing, or a frame
    /// read), upstream events, timers, the drain signal, in that order.
    /// Upstream events and the drain signal matter only while the
    /// connection is open; while it closes, only the peer's close frame,
    /// the last writes and the linger's deadline do.
    fn poll_wake(
        &mut self,
        cx: &mut Context<'_>,
        shutdown: Pin<&mut async_channel::Receiver<()>>,
        events: Pin<&mut Option<Receiver<OpEvent>>>,
    ) -> Poll<Wake> {
        let open = self.connection.is_open();
        let deadline = self
            .connection
            .poll_timeout()
            .map(|at| self.gateway.instant_at(at));
        let write_deadline = self
            .drive
            .writer
            .write_deadline(self.gateway.config.timeouts.write);
        if let Poll::Ready(wake) = poll_io(
            &mut self.socket,
            &mut self.drive.writer,
            self.read_usable,
            cx,
        ) {
            return Poll::Ready(wake);
        }
        if open {
            if let Some(rx) = events.as_pin_mut() {
                // `None` never comes: the sender lives in `Drive::events`.
                if let Poll::Ready(Some((op, event))) = rx.poll_next(cx) {
                    return Poll::Ready(Wake::Upstream(op, event));
                }
            }
        }
        let at = [deadline, write_deadline].into_iter().flatten().min();
        if self.poll_timer(at, cx).is_ready() {
            return Poll::Ready(Wake::Timer);
        }
        // The channel is closed (not sent to) when drain begins.
        if open && shutdown.poll_next(cx).is_ready() {
            return Poll::Ready(Wake::Shutdown);
        }
        Poll::Pending
    }

    /// Carries out the machine's effects until it has none; false when a
    /// token check started and must answer before the next one.
    fn run_effects(&mut self, mut events: Pin<&mut Option<Receiver<OpEvent>>>) -> bool {
        let gateway = &self.gateway;
        let config = &gateway.config;
        let drive = &mut self.drive;
        while let Some(effect) = self.connection.poll_effect() {
            match effect {
                Effect::SendText(text) => drive.writer.push(Outbound::Text(text)),
                Effect::SendPing => drive.writer.push(Outbound::Ping),
                Effect::Authenticate { payload } => {
                    gateway
                        .live()
                        .context_capture
                        .add_init(&mut drive.context, payload.as_ref());
                    match &gateway.jwt {
                        Some(jwt) => {
                            let jwt = jwt.clone();
                            let now = gateway.now();
                            drive.waiting = Waiting::Auth(Box::pin(async move {
                                jwt.authenticate(now, payload.as_ref()).await
                            }));
                            return false;
                        }
                        None => {
                            let verdict = authenticate(&config.auth.tokens, payload.as_ref());
                            authenticated(gateway, &mut self.connection, drive, verdict);
                        }
                    }
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
                    let claims = drive
                        .claims
                        .as_ref()
                        .map(|claims| claims.as_ref().clone())
                        .unwrap_or_default();
                    let panic_for_test = config.testing.panic_trigger
                        && request.operation_name.as_deref() == Some(PANIC_TRIGGER_OPERATION_TASK);
                    let context = drive
                        .shared_context
                        .get_or_insert_with(|| Arc::new(drive.context.clone()))
                        .clone();
                    // Persisted queries resolve here, as on every transport.
                    let mut execution = start_execution(gateway, request, claims, context);
                    // What is ready at once (a request that did not prepare
                    // ends here with its errors) goes to the connection now.
                    while let Some(event) = execution.poll_output() {
                        self.connection.handle_upstream(gateway.now(), op, event);
                    }
                    if !execution.is_finished() {
                        let field = execution.root_keys().join(", ");
                        let events_tx = match &drive.events {
                            Some(tx) => tx.clone(),
                            None => {
                                let (tx, rx) =
                                    crate::events::bounded(config.limits.operation_queue);
                                events.set(Some(rx));
                                drive.events.insert(tx).clone()
                            }
                        };
                        let task = tasks::spawn(execute::run_operation_guarded(
                            gateway.clone(),
                            execution,
                            op,
                            events_tx,
                            panic_for_test,
                        ));
                        drive
                            .operations
                            .insert(op, Operation { _task: task, field });
                        drive.table_changed = true;
                    }
                }
                Effect::Cancel { op } => {
                    gateway
                        .metrics
                        .operations_cancelled_total
                        .fetch_add(1, Ordering::Relaxed);
                    drive.table_changed |= drive.operations.remove(&op).is_some();
                }
                Effect::Close { code, reason } => drive.writer.push(Outbound::Close(CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                })),
            }
            let held = self.connection.held_operations();
            drive.count_operations(gateway, held);
        }
        true
    }

    /// Feeds one input to the machine.
    fn handle_wake(&mut self, wake: Wake, events: Option<&Receiver<OpEvent>>) {
        let now = self.gateway.now();
        let connection = &mut self.connection;
        let drive = &mut self.drive;
        let write = self.gateway.config.timeouts.write;
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
                        // The peer closed first: read once more, so that
                        // tungstenite writes its answer (`Waiting::CloseAnswer`).
                        drive.waiting = Waiting::CloseAnswer {
                            code,
                            at: now,
                            until: Instant::now() + write,
                        };
                        return;
                    }
                    drive.writer.gone = true;
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
                self.read_usable = false;
                connection.handle_frame_too_big(now, bytes);
            }
            Wake::Frame(Some(Err(error))) => match frame_violation(&error) {
                Some(violation) => {
                    tracing::debug!(%error, ?violation, "WebSocket protocol violation");
                    // The WebSocket layer reads nothing after an error: the
                    // linger ends at its deadline after the core's close.
                    self.read_usable = false;
                    connection.handle_frame_violation(now, violation);
                }
                None => {
                    drive.writer.gone = true;
                    connection.handle_transport_closed(now, close::ABNORMAL_CLOSURE);
                }
            },
            Wake::Frame(None) => {
                drive.writer.gone = true;
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
                    ended |= event.is_terminal() && drive.operations.remove(&op).is_some();
                    connection.handle_upstream(now, op, event);
                    next = events.and_then(|rx| rx.try_recv().ok());
                }
                if let Some((op, event)) = next {
                    ended |= event.is_terminal() && drive.operations.remove(&op).is_some();
                    connection.handle_upstream(now, op, event);
                }
                if ended {
                    publish_rows(&self.view, connection, &drive.operations);
                }
            }
            Wake::Timer => {
                if drive
                    .writer
                    .write_deadline(write)
                    .is_some_and(|at| at <= Instant::now())
                {
                    // The client took no bytes for `timeouts.write`: gone.
                    drive.writer.gone = true;
                    connection.handle_transport_closed(now, close::ABNORMAL_CLOSURE);
                }
                connection.handle_timeout(now);
            }
            Wake::Shutdown => connection.handle_shutdown(now),
        }
    }
}

/// Hands the verdict on the init to the machine, with the claims of an
/// accepted token in the operations' metadata.
fn authenticated(
    gateway: &Gateway,
    connection: &mut ServerConnection,
    drive: &mut Drive,
    verdict: AuthVerdict,
) {
    if let Some(claims) = &drive.claims {
        gateway
            .live()
            .context_capture
            .add_claims(&mut drive.context, Some(&Value::Object((**claims).clone())));
    }
    drive.shared_context = None;
    if matches!(verdict, AuthVerdict::Reject { .. }) {
        gateway
            .metrics
            .auth_rejected_total
            .fetch_add(1, Ordering::Relaxed);
    }
    connection.handle_auth(gateway.now(), verdict);
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

    /// What an idle connection's task holds is mostly this state
    /// (docs/BENCHMARKS.md, "Lean connections"): 1,120 bytes when this was
    /// written (the WebSocket layer 400, the core's machine 360).
    #[test]
    fn the_connection_state_stays_small() {
        let bytes = std::mem::size_of::<WebSocketTask>();
        println!("WebSocketTask: {bytes} bytes");
        assert!(bytes <= 1_152, "WebSocketTask grew to {bytes} bytes");
    }

    /// What each operation's task holds for its whole life is mostly its
    /// future (docs/BENCHMARKS.md, "Lean subscriptions"): under 2 KiB,
    /// async-task stores it inside the task's own allocation instead of
    /// boxing it apart (2,440 bytes, boxed, before that change).
    #[test]
    fn the_operation_state_stays_small() {
        fn output_size<A, B, C, D, E, F>(_: &impl FnOnce(A, B, C, D, E) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        // async-task boxes a future of 2,048 bytes or more; smol's executor
        // and `tasks::spawn` wrap it in a few words of their own.
        const OPERATION_LIMIT: usize = 1_152;
        let bytes = output_size(&execute::run_operation_guarded);
        println!("run_operation_guarded: {bytes} bytes");
        assert!(
            bytes <= OPERATION_LIMIT,
            "the operation's future grew to {bytes} bytes"
        );
    }

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
