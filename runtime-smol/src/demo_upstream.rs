//! The demo upstream: a real gRPC server over HTTP/2 (hyper's server on
//! smol) implementing `terminus.demo.v1.Demo` and `terminus.demo.v1.Rooms`
//! with the prost types of `terminus-proto`. What the services answer (the
//! greeting, the ticks, the shared clock, the rooms, their bounds and
//! failures) is the core's model, `core/src/demo_service.rs`, which the
//! browser simulator's offline upstream drives too; this module carries it
//! over HTTP/2 on the wall clock. The clock's epoch is the instant the
//! server started; the rooms live in one [`Rooms`] behind a mutex, and each
//! `Events` stream leaves its room when its body is dropped (the client
//! reset it, the call ended, or the server stopped).
//!
//! `terminus demo` embeds it, and the tests use it as the upstream they can
//! stop and restart. Every task it runs is owned: the accept loop by the
//! [`DemoUpstream`], each connection by the accept loop, and hyper's per-stream
//! tasks by the server's executor, so [`DemoUpstream::stop`] (or dropping it)
//! really closes the listener and every connection and stream in flight.
//!
//! Like every standard gRPC server (grpc-go, grpc-java, grpcio), it enforces
//! the client's `grpc-timeout` on the whole call, streams included: when the
//! deadline passes the call ends with `DEADLINE_EXCEEDED`. So a gateway that
//! sent a unary deadline on a subscription is caught by the tests here too.

use crate::grpc::executor::OwnedExecutor;
use crate::grpc::{code, encode_message, frame, parse_timeout_header, take_frame, CONTENT_TYPE};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use prost::Message;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use terminus_core::demo_service::{
    self, Clock, DemoError, RoomLimits, RoomStep, Rooms, SubscriberId, TickStep, Ticks,
};
use terminus_core::Millis;
use terminus_proto::demo::v1::{
    ClockRequest, HelloReply, HelloRequest, RoomEvent, RoomRequest, SayReply, SayRequest, Tick,
    TicksRequest,
};

/// The largest request the demo accepts.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// How long the demo waits for a request body to arrive.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent streams the demo allows per connection: far above what the
/// gateway opens, so the gateway's own bound is the one tests see.
const MAX_STREAMS_PER_CONNECTION: u32 = 10_000;

/// Counters and state shared by the server's tasks.
struct Shared {
    live_streams: AtomicUsize,
    cancelled_streams: AtomicUsize,
    accepted_connections: AtomicUsize,
    /// Set by `stop`: streams ended by stopping are not client cancellations.
    stopping: AtomicBool,
    /// The clock's epoch: `Clock` seqs count periods since this instant.
    epoch: Instant,
    rooms: Mutex<RoomsState>,
}

impl Shared {
    fn new(limits: RoomLimits) -> Shared {
        Shared {
            live_streams: AtomicUsize::new(0),
            cancelled_streams: AtomicUsize::new(0),
            accepted_connections: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            epoch: Instant::now(),
            rooms: Mutex::new(RoomsState {
                model: Rooms::new(limits),
                wakers: HashMap::new(),
            }),
        }
    }

    fn rooms(&self) -> MutexGuard<'_, RoomsState> {
        self.rooms
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Milliseconds since the epoch.
    fn now(&self) -> Millis {
        Millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// The rooms model and the waker of each subscriber waiting for an event
/// (at most one per open `Events` stream, removed when it leaves).
struct RoomsState {
    model: Rooms,
    wakers: HashMap<SubscriberId, Waker>,
}

/// The descriptors of the demo service (`terminus.demo.v1.Demo`), for
/// [`crate::grpc::GrpcUpstream::from_descriptors`].
pub fn descriptor_pool() -> prost_reflect::DescriptorPool {
    prost_reflect::DescriptorPool::decode(terminus_proto::FILE_DESCRIPTOR_SET)
        .expect("terminus-proto's FILE_DESCRIPTOR_SET is built from valid .proto files")
}

/// A running demo gRPC server. Dropping it stops it.
pub struct DemoUpstream {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept_loop: Mutex<Option<smol::Task<()>>>,
    executor: OwnedExecutor,
}

impl std::fmt::Debug for DemoUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoUpstream")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl DemoUpstream {
    /// Listens on `addr` (port 0 for any free port) and serves the demo
    /// service until stopped, with the default [`RoomLimits`].
    pub async fn start(addr: SocketAddr) -> io::Result<DemoUpstream> {
        DemoUpstream::start_configured(addr, RoomLimits::default(), MAX_STREAMS_PER_CONNECTION)
            .await
    }

    /// [`DemoUpstream::start`] announcing `max_streams_per_connection` as
    /// its `SETTINGS_MAX_CONCURRENT_STREAMS` (tests of a client that must
    /// respect a server's limit).
    pub async fn start_with_stream_limit(
        addr: SocketAddr,
        max_streams_per_connection: u32,
    ) -> io::Result<DemoUpstream> {
        DemoUpstream::start_configured(addr, RoomLimits::default(), max_streams_per_connection)
            .await
    }

    /// [`DemoUpstream::start`] with these bounds for the rooms service.
    pub async fn start_with(addr: SocketAddr, limits: RoomLimits) -> io::Result<DemoUpstream> {
        DemoUpstream::start_configured(addr, limits, MAX_STREAMS_PER_CONNECTION).await
    }

    async fn start_configured(
        addr: SocketAddr,
        limits: RoomLimits,
        max_streams_per_connection: u32,
    ) -> io::Result<DemoUpstream> {
        let listener = smol::net::TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(limits));
        let executor = OwnedExecutor::new();
        let accept_loop = crate::tasks::spawn(accept_loop(
            listener,
            shared.clone(),
            executor.clone(),
            max_streams_per_connection,
        ));
        tracing::info!(%local_addr, "demo gRPC upstream listening");
        Ok(DemoUpstream {
            local_addr,
            shared,
            accept_loop: Mutex::new(Some(accept_loop)),
            executor,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<local_addr>`, the endpoint to configure a gRPC upstream with.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Closes the listener and every connection and stream in flight, and
    /// returns once they are gone (so the port can be bound again).
    pub async fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let accept_loop = self.take_accept_loop();
        if let Some(accept_loop) = accept_loop {
            accept_loop.cancel().await;
        }
        self.executor.cancel_all().await;
        tracing::info!(local_addr = %self.local_addr, "demo gRPC upstream stopped");
    }

    /// Calls being served right now.
    pub fn live_streams(&self) -> usize {
        self.shared.live_streams.load(Ordering::SeqCst)
    }

    /// Calls that the client reset before they ended.
    pub fn cancelled_streams(&self) -> usize {
        self.shared.cancelled_streams.load(Ordering::SeqCst)
    }

    /// TCP connections accepted since start.
    pub fn accepted_connections(&self) -> usize {
        self.shared.accepted_connections.load(Ordering::SeqCst)
    }

    /// Rooms that exist now (a room exists while it has subscribers).
    pub fn rooms(&self) -> usize {
        self.shared.rooms().model.rooms()
    }

    /// Open `Rooms.Events` streams, over all rooms.
    pub fn room_subscribers(&self) -> usize {
        self.shared.rooms().model.subscribers()
    }

    /// Every room with its subscriber count, by name.
    pub fn room_counts(&self) -> Vec<(String, usize)> {
        self.shared.rooms().model.room_counts()
    }

    /// Milliseconds since the clock's epoch (the server's start): `Clock`
    /// streams of period `p` carry seq `now / p` at this instant.
    pub fn clock_now(&self) -> Millis {
        self.shared.now()
    }

    fn take_accept_loop(&self) -> Option<smol::Task<()>> {
        self.accept_loop
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take()
    }
}

impl Drop for DemoUpstream {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        drop(self.take_accept_loop());
        self.executor.cancel_all_now();
    }
}

/// Accepts connections and serves each in a task owned by this loop, so
/// cancelling the loop closes them all.
async fn accept_loop(
    listener: smol::net::TcpListener,
    shared: Arc<Shared>,
    executor: OwnedExecutor,
    max_streams: u32,
) {
    let mut connections: Vec<smol::Task<()>> = Vec::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of fds or similar: wait a little instead of spinning.
                tracing::warn!(%error, "demo upstream accept failed");
                smol::Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        shared.accepted_connections.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        connections.retain(|connection| !connection.is_finished());
        let service_shared = shared.clone();
        let service = hyper::service::service_fn(move |request| {
            let shared = service_shared.clone();
            async move { Ok::<_, Infallible>(serve(shared, request).await) }
        });
        let mut builder = hyper::server::conn::http2::Builder::new(executor.clone());
        builder
            .timer(smol_hyper::rt::SmolTimer::new())
            .max_concurrent_streams(max_streams)
            // h2's rapid-reset guard (default 20) sends GOAWAY when a client
            // resets streams the server has not accepted yet. The gateway
            // multiplexes up to its max_streams_per_connection subscriptions over
            // each connection, so a mass disconnect legitimately resets hundreds
            // at once (seen in the 10,000-client benchmark, docs/BENCHMARKS.md).
            .max_pending_accept_reset_streams(max_streams as usize);
        let connection = builder.serve_connection(smol_hyper::rt::FuturesIo::new(stream), service);
        connections.push(crate::tasks::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "demo upstream connection ended");
            }
        }));
    }
}

/// Counts a call as live while it exists; a call dropped before it sent its
/// status was reset by the client (unless the server is stopping).
struct StreamGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl StreamGuard {
    fn new(shared: Arc<Shared>) -> Self {
        shared.live_streams.fetch_add(1, Ordering::SeqCst);
        StreamGuard {
            shared,
            finished: false,
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.finished && !self.shared.stopping.load(Ordering::SeqCst) {
            self.shared.cancelled_streams.fetch_add(1, Ordering::SeqCst);
        }
        self.shared.live_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The status message of a call whose `grpc-timeout` passed, as grpc-go
/// and grpcio word it.
const DEADLINE_MESSAGE: &str = "Deadline Exceeded";

/// Answers one gRPC request.
async fn serve(shared: Arc<Shared>, request: Request<Incoming>) -> Response<DemoBody> {
    let guard = StreamGuard::new(shared.clone());
    let path = request.uri().path().to_owned();
    let mut deadline = match request.headers().get("grpc-timeout") {
        None => None,
        Some(value) => match value.to_str().ok().and_then(parse_timeout_header) {
            Some(timeout) => Some(smol::Timer::after(timeout)),
            None => {
                return trailers_only(
                    guard,
                    code::INVALID_ARGUMENT,
                    &format!("malformed grpc-timeout {value:?}"),
                )
            }
        },
    };
    let read = read_message(request);
    let read = match deadline.as_mut() {
        Some(timer) => crate::timeout::until(timer, read).await.ok(),
        None => Some(read.await),
    };
    let Some(read) = read else {
        return trailers_only(guard, code::DEADLINE_EXCEEDED, DEADLINE_MESSAGE);
    };
    let message = match read {
        Ok(message) => message,
        Err(message) => return trailers_only(guard, code::INVALID_ARGUMENT, &message),
    };
    let answer =
        match path.as_str() {
            "/terminus.demo.v1.Demo/Hello" => {
                decode::<HelloRequest>(message, "HelloRequest").map(|hello| {
                    Answer::Unary(
                        HelloReply {
                            message: demo_service::hello_message(&hello.name),
                        }
                        .encode_to_vec(),
                    )
                })
            }
            "/terminus.demo.v1.Demo/Ticks" => {
                decode::<TicksRequest>(message, "TicksRequest").map(|ticks| {
                    Answer::Stream(Stream::Ticks(Ticker::start(demo_service::TicksRequest {
                        every_ms: ticks.every_ms,
                        limit: ticks.limit,
                        fail_at: ticks.fail_at,
                    })))
                })
            }
            "/terminus.demo.v1.Demo/Clock" => decode::<ClockRequest>(message, "ClockRequest")
                .and_then(|clock| {
                    let request = demo_service::ClockRequest {
                        every_ms: clock.every_ms,
                    };
                    let clock = Clock::start(shared.now(), request)?;
                    Ok(Answer::Stream(Stream::Clock {
                        clock,
                        shared,
                        timer: smol::Timer::never(),
                    }))
                }),
            "/terminus.demo.v1.Rooms/Events" => decode::<RoomRequest>(message, "RoomRequest")
                .and_then(|room| {
                    let id = shared.rooms().model.join(&room.name)?;
                    Ok(Answer::Stream(Stream::Room(RoomMember { shared, id })))
                }),
            "/terminus.demo.v1.Rooms/Say" => {
                decode::<SayRequest>(message, "SayRequest").and_then(|say| {
                    let (said, wakers) = {
                        let mut rooms = shared.rooms();
                        match rooms.model.say(&say.room, &say.text) {
                            Ok(said) => {
                                let wakers: Vec<Waker> = said
                                    .notify
                                    .iter()
                                    .filter_map(|id| rooms.wakers.remove(id))
                                    .collect();
                                (Ok(said), wakers)
                            }
                            Err(error) => (Err(error), Vec::new()),
                        }
                    };
                    // Woken outside the lock: their polls take it.
                    wakers.into_iter().for_each(Waker::wake);
                    let said = said?;
                    Ok(Answer::Unary(
                        SayReply {
                            ok: true,
                            delivered: i32::try_from(said.delivered).unwrap_or(i32::MAX),
                        }
                        .encode_to_vec(),
                    ))
                })
            }
            other => Err(DemoError {
                code: code::UNIMPLEMENTED,
                message: format!("unknown method {other}"),
            }),
        };
    match answer {
        Ok(Answer::Unary(reply)) => {
            let mut body = DemoBody::new(guard, None, deadline);
            body.pending.push(Frame::data(frame(&reply)));
            body.pending
                .push(Frame::trailers(status_headers(code::OK, "")));
            grpc_response(body)
        }
        Ok(Answer::Stream(stream)) => grpc_response(DemoBody::new(guard, Some(stream), deadline)),
        Err(error) => demo_error(guard, &error),
    }
}

/// What a method answers: one reply message, or a stream.
enum Answer {
    /// The encoded reply of a unary call.
    Unary(Vec<u8>),
    /// The events of a server-streaming call.
    Stream(Stream),
}

/// The request's message `M`, named `name` in the `INVALID_ARGUMENT`
/// error when it does not decode.
fn decode<M: Message + Default>(message: Bytes, name: &str) -> Result<M, DemoError> {
    M::decode(message).map_err(|error| DemoError {
        code: code::INVALID_ARGUMENT,
        message: format!("invalid {name}: {error}"),
    })
}

/// Reads the request's single gRPC message, bounded in size and time.
async fn read_message(request: Request<Incoming>) -> Result<Bytes, String> {
    let content_type = request.headers().get(http::header::CONTENT_TYPE);
    if !content_type
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with(CONTENT_TYPE))
    {
        return Err(format!("content-type must be {CONTENT_TYPE}"));
    }
    let read = async {
        Limited::new(request.into_body(), MAX_REQUEST_BYTES)
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|error| format!("reading the request: {error}"))
    };
    let bytes = crate::timeout::timeout(REQUEST_READ_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err("the request did not arrive in time".to_owned()))?;
    let mut buffer = BytesMut::from(&bytes[..]);
    match take_frame(&mut buffer)? {
        Some(message) if buffer.is_empty() => Ok(message),
        _ => Err("the request must be exactly one gRPC message".to_owned()),
    }
}

fn status_headers(status: u32, message: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("grpc-status", HeaderValue::from(status));
    if !message.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&encode_message(message)) {
            headers.insert("grpc-message", value);
        }
    }
    headers
}

fn grpc_response(body: DemoBody) -> Response<DemoBody> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

/// The model's refusal, answered trailers-only.
fn demo_error(guard: StreamGuard, error: &DemoError) -> Response<DemoBody> {
    trailers_only(guard, error.code, &error.message)
}

/// An error answered with the status in the headers and no body.
fn trailers_only(mut guard: StreamGuard, status: u32, message: &str) -> Response<DemoBody> {
    guard.finished = true;
    let mut response = grpc_response(DemoBody::new(guard, None, None));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .extend(status_headers(status, message));
    response
}

/// A `Ticks` stream: the core's model on the wall clock.
struct Ticker {
    ticks: Ticks,
    /// The instant the model's `Millis(0)` stands for: the call's start.
    epoch: Instant,
    /// Fires when the model's next step is due.
    timer: smol::Timer,
}

impl Ticker {
    fn start(request: demo_service::TicksRequest) -> Ticker {
        let epoch = Instant::now();
        Ticker {
            ticks: Ticks::start(Millis::ZERO, request),
            epoch,
            timer: smol::Timer::never(),
        }
    }

    fn now(&self) -> Millis {
        Millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// A server stream's source of messages.
enum Stream {
    /// `Ticks`: the call's own ticks.
    Ticks(Ticker),
    /// `Clock`: the shared clock, on the server's epoch.
    Clock {
        clock: Clock,
        shared: Arc<Shared>,
        /// Fires when the next tick is due.
        timer: smol::Timer,
    },
    /// `Rooms.Events`: one subscriber of a room.
    Room(RoomMember),
}

/// A subscriber of a room; dropping it leaves the room (and forgets the
/// room when it was the last subscriber).
struct RoomMember {
    shared: Arc<Shared>,
    id: SubscriberId,
}

impl Drop for RoomMember {
    fn drop(&mut self) {
        let mut rooms = self.shared.rooms();
        rooms.model.leave(self.id);
        rooms.wakers.remove(&self.id);
    }
}

/// What a stream has next.
enum StreamStep {
    Message(Bytes),
    End(u32, String),
    Pending,
}

impl Stream {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> StreamStep {
        match self {
            Stream::Ticks(ticker) => loop {
                let step = ticker.ticks.poll(ticker.now());
                let due = ticker.ticks.poll_timeout();
                if let Some(step) = tick_step(step, due, ticker.epoch, &mut ticker.timer, cx) {
                    return step;
                }
            },
            Stream::Clock {
                clock,
                shared,
                timer,
            } => loop {
                let step = clock.poll(shared.now());
                let due = clock.poll_timeout();
                if let Some(step) = tick_step(step, due, shared.epoch, timer, cx) {
                    return step;
                }
            },
            Stream::Room(member) => {
                let mut rooms = member.shared.rooms();
                match rooms.model.poll(member.id) {
                    Some(RoomStep::Event(event)) => {
                        let message = RoomEvent {
                            room: event.room.to_string(),
                            seq: event.seq,
                            text: event.text.to_string(),
                        };
                        StreamStep::Message(frame(&message.encode_to_vec()))
                    }
                    Some(RoomStep::Failed(error)) => StreamStep::End(error.code, error.message),
                    None => {
                        rooms.wakers.insert(member.id, cx.waker().clone());
                        StreamStep::Pending
                    }
                }
            }
        }
    }
}

/// What a tick stream (`Ticks` or `Clock`) has next: its model's `step`,
/// or, when it has none yet, the wait on `timer` for the model's `due`
/// (ms after `epoch`). `None`: the timer fired; poll the model again.
fn tick_step(
    step: Option<TickStep>,
    due: Option<Millis>,
    epoch: Instant,
    timer: &mut smol::Timer,
    cx: &mut Context<'_>,
) -> Option<StreamStep> {
    match step {
        Some(TickStep::Tick(seq)) => {
            Some(StreamStep::Message(frame(&Tick { seq }.encode_to_vec())))
        }
        Some(TickStep::End) => Some(StreamStep::End(code::OK, String::new())),
        Some(TickStep::Failed(message)) => Some(StreamStep::End(code::INTERNAL, message)),
        None => {
            let Some(due) = due else {
                return Some(StreamStep::End(code::OK, String::new()));
            };
            match epoch.checked_add(Duration::from_millis(due.0)) {
                Some(at) => timer.set_at(at),
                // Beyond what the clock can represent: never due.
                None => return Some(StreamStep::Pending),
            }
            if Pin::new(timer).poll(cx).is_pending() {
                return Some(StreamStep::Pending);
            }
            None
        }
    }
}

/// A response body: frames ready to send, then the stream's messages if any.
struct DemoBody {
    pending: Vec<Frame<Bytes>>,
    stream: Option<Stream>,
    guard: StreamGuard,
    /// The call's `grpc-timeout`, if the client sent one.
    deadline: Option<smol::Timer>,
}

impl DemoBody {
    fn new(guard: StreamGuard, stream: Option<Stream>, deadline: Option<smol::Timer>) -> Self {
        DemoBody {
            pending: Vec::new(),
            stream,
            guard,
            deadline,
        }
    }

    fn trailers(&mut self, status: u32, message: &str) -> Frame<Bytes> {
        self.stream = None;
        self.guard.finished = true;
        Frame::trailers(status_headers(status, message))
    }
}

impl Body for DemoBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            let next = this.pending.remove(0);
            if next.is_trailers() {
                this.guard.finished = true;
            }
            return Poll::Ready(Some(Ok(next)));
        }
        if this.stream.is_some()
            && this
                .deadline
                .as_mut()
                .is_some_and(|timer| Pin::new(timer).poll(cx).is_ready())
        {
            return Poll::Ready(Some(Ok(
                this.trailers(code::DEADLINE_EXCEEDED, DEADLINE_MESSAGE)
            )));
        }
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(None);
        };
        match stream.poll_next(cx) {
            StreamStep::Message(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            StreamStep::End(status, message) => {
                Poll::Ready(Some(Ok(this.trailers(status, &message))))
            }
            StreamStep::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.stream.is_none() && self.guard.finished
    }
}
