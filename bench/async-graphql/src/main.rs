//! A benchmark peer for Terminus: the demo schema (`hello`, `ticks`, and the
//! shared fields `clock`, `room`, `say`) served by async-graphql on axum and
//! tokio, over `graphql-transport-ws` (and the legacy `graphql-ws`, which
//! async-graphql also speaks) and HTTP POST.
//!
//! Ticks come from an in-process tokio timer per subscription on a fixed
//! schedule (tick n is due n * everyMs after the subscription started; a
//! tick that is late by more than a period re-bases the schedule, so no
//! burst follows a stall). There is no gRPC hop: Terminus gets the same
//! ticks from its demo upstream over loopback HTTP/2, which is more work per
//! tick. (The demo upstream re-arms its timer `everyMs` after each tick, so
//! its schedule drifts by the timer's lateness; a fixed schedule here keeps
//! tokio's whole-millisecond timer rounding from accumulating into the
//! peer's measured lateness.)
//!
//! The shared fields are built the way async-graphql users build them: a
//! `tokio::sync::broadcast` channel per room and per clock period, read
//! through `tokio_stream`'s `BroadcastStream`, with Terminus's demo
//! semantics. `clock(everyMs)` is one shared `tokio::time::interval` task
//! per distinct period, started by its first subscriber and aborted when its
//! last one leaves; it ticks at every whole period since the server started,
//! `seq` = the periods elapsed since then, so every subscriber of the period
//! gets the same ticks with the same `seq`. `say(room, text)` numbers the
//! room's messages from 1 and sends `{room, seq, text}` to the room's
//! channel; a room exists while it has subscribers (its count starts again
//! after it emptied); `room(name)` subscribes to it.
//! A subscriber that falls more than the channel's capacity behind skips
//! the events it missed (`RecvError::Lagged`), as `BroadcastStream` users
//! usually do.
//!
//! `/metrics` exposes the gauges the load tool polls to decide that the peer
//! is back to its baseline: `bench_connections`, `bench_operations` (live
//! subscriptions of any field), `bench_shared_streams` (running clock tasks
//! plus rooms with a subscriber), `process_open_fds`,
//! `process_resident_memory_bytes`.
//!
//! Usage: `bench-async-graphql [--listen 127.0.0.1:8081]`; it prints
//! `listening on http://ADDR` once bound and runs until SIGINT/SIGTERM.

use async_graphql::{Error, Object, Schema, SimpleObject, Subscription};
use async_graphql_axum::{GraphQL, GraphQLProtocol, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::Stream;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::BroadcastStream;

/// Events buffered per room and per clock channel; a subscriber further
/// behind than this skips what it missed.
const CHANNEL_CAPACITY: usize = 256;

/// Live-object gauges shared by every connection and stream.
#[derive(Default)]
struct Gauges {
    connections: AtomicI64,
    operations: AtomicI64,
}

/// Counts one live object for as long as it exists.
struct Live(Arc<Gauges>, fn(&Gauges) -> &AtomicI64);

impl Live {
    fn new(gauges: Arc<Gauges>, which: fn(&Gauges) -> &AtomicI64) -> Live {
        which(&gauges).fetch_add(1, Ordering::Relaxed);
        Live(gauges, which)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, Ordering::Relaxed);
    }
}

/// One message of the Ticks stream.
#[derive(SimpleObject, Clone)]
struct Tick {
    /// The tick's sequence number, from 1.
    seq: i32,
}

/// One message said in a room.
#[derive(SimpleObject, Clone)]
struct RoomEvent {
    /// The room's name.
    room: String,
    /// The room's message number, from 1.
    seq: i32,
    /// What was said.
    text: String,
}

/// A running shared clock: one interval task per period.
struct Clock {
    sender: broadcast::Sender<Tick>,
    subscribers: usize,
    task: JoinHandle<()>,
}

/// A room: its channel, its message counter, its subscribers.
struct Room {
    sender: broadcast::Sender<RoomEvent>,
    seq: i32,
    subscribers: usize,
}

/// The shared streams: clocks by period, rooms by name.
struct Hub {
    /// When the server started: clocks tick at whole periods since then.
    epoch: Instant,
    clocks: Mutex<HashMap<u64, Clock>>,
    rooms: Mutex<HashMap<String, Room>>,
}

impl Hub {
    fn new() -> Hub {
        Hub {
            epoch: Instant::now(),
            clocks: Mutex::default(),
            rooms: Mutex::default(),
        }
    }

    /// Running clocks plus rooms (a room exists while it has subscribers).
    fn shared_streams(&self) -> usize {
        self.clocks.lock().expect("clocks lock").len()
            + self.rooms.lock().expect("rooms lock").len()
    }

    /// Joins the clock of period `every_ms`, starting it if needed.
    fn join_clock(&self, every_ms: u64) -> broadcast::Receiver<Tick> {
        let mut clocks = self.clocks.lock().expect("clocks lock");
        let clock = clocks.entry(every_ms).or_insert_with(|| {
            let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
            let tx = sender.clone();
            let every = Duration::from_millis(every_ms);
            let epoch = self.epoch;
            let periods = move |at: Instant| (at - epoch).as_millis() / u128::from(every_ms);
            let first = epoch + every * (periods(Instant::now()) as u32 + 1);
            let task = tokio::spawn(async move {
                let mut interval = tokio::time::interval_at(first, every);
                loop {
                    // The instant the tick was due: its period number.
                    let due = interval.tick().await;
                    let seq = i32::try_from(periods(due)).unwrap_or(i32::MAX);
                    let _ = tx.send(Tick { seq });
                }
            });
            Clock {
                sender,
                subscribers: 0,
                task,
            }
        });
        clock.subscribers += 1;
        clock.sender.subscribe()
    }

    /// Leaves the clock of period `every_ms`, stopping it after the last.
    fn leave_clock(&self, every_ms: u64) {
        let mut clocks = self.clocks.lock().expect("clocks lock");
        if let Some(clock) = clocks.get_mut(&every_ms) {
            clock.subscribers -= 1;
            if clock.subscribers == 0 {
                clock.task.abort();
                clocks.remove(&every_ms);
            }
        }
    }

    /// Joins room `name`, opening it if needed.
    fn join_room(&self, name: String) -> broadcast::Receiver<RoomEvent> {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        let room = rooms.entry(name).or_insert_with(|| Room {
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
            seq: 0,
            subscribers: 0,
        });
        room.subscribers += 1;
        room.sender.subscribe()
    }

    /// Leaves room `name`, closing it after the last subscriber.
    fn leave_room(&self, name: &str) {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        if let Some(room) = rooms.get_mut(name) {
            room.subscribers -= 1;
            if room.subscribers == 0 {
                rooms.remove(name);
            }
        }
    }

    /// Sends `text` to the subscribers of room `name`, if it has any.
    fn say(&self, name: String, text: String) {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        if let Some(room) = rooms.get_mut(&name) {
            room.seq += 1;
            let _ = room.sender.send(RoomEvent {
                room: name,
                seq: room.seq,
                text,
            });
        }
    }
}

/// Leaves a room when its subscription's stream is dropped.
struct RoomMember(Arc<Hub>, String);

impl Drop for RoomMember {
    fn drop(&mut self) {
        self.0.leave_room(&self.1);
    }
}

/// Leaves a clock when its subscription's stream is dropped.
struct ClockMember(Arc<Hub>, u64);

impl Drop for ClockMember {
    fn drop(&mut self) {
        self.0.leave_clock(self.1);
    }
}

/// The events of a broadcast receiver, skipping what a lagging subscriber
/// missed; `guard` lives as long as the stream.
fn events<T: Clone + Send + 'static, G: Send + 'static>(
    receiver: broadcast::Receiver<T>,
    guard: G,
) -> impl Stream<Item = T> {
    BroadcastStream::new(receiver).filter_map(move |event| {
        let _guard = &guard;
        std::future::ready(event.ok())
    })
}

struct Query;

#[Object]
impl Query {
    /// Greets `name`: answers "Hello, <name>!" ("world" when absent or empty).
    async fn hello(&self, name: Option<String>) -> String {
        let name = name.filter(|n| !n.is_empty());
        format!("Hello, {}!", name.as_deref().unwrap_or("world"))
    }
}

struct Mutation {
    hub: Arc<Hub>,
}

#[Object]
impl Mutation {
    /// Says `text` in `room`: every subscriber of the room gets it once.
    async fn say(&self, room: String, text: String) -> bool {
        self.hub.say(room, text);
        true
    }
}

struct SubscriptionRoot {
    gauges: Arc<Gauges>,
    hub: Arc<Hub>,
}

#[Subscription]
impl SubscriptionRoot {
    /// One tick every `everyMs` milliseconds; ends after `limit` ticks,
    /// fails at tick `failAt`.
    async fn ticks(
        &self,
        every_ms: i32,
        limit: Option<i32>,
        fail_at: Option<i32>,
    ) -> impl Stream<Item = Result<Tick, Error>> {
        let every = Duration::from_millis(every_ms.max(1) as u64);
        Ticker {
            next_seq: 1,
            limit,
            fail_at,
            every,
            due: Instant::now() + every,
            timer: Box::pin(tokio::time::sleep(every)),
            done: false,
            _live: Live::new(self.gauges.clone(), |g| &g.operations),
        }
    }

    /// One tick every `everyMs` milliseconds, shared: every subscriber of
    /// the same period gets the same ticks, with the same `seq`.
    async fn clock(&self, every_ms: i32) -> impl Stream<Item = Tick> {
        let every_ms = every_ms.max(1) as u64;
        let receiver = self.hub.join_clock(every_ms);
        let member = ClockMember(self.hub.clone(), every_ms);
        let live = Live::new(self.gauges.clone(), |g| &g.operations);
        events(receiver, (member, live))
    }

    /// The messages said in room `name` from now on.
    async fn room(&self, name: String) -> impl Stream<Item = RoomEvent> {
        let receiver = self.hub.join_room(name.clone());
        let member = RoomMember(self.hub.clone(), name);
        let live = Live::new(self.gauges.clone(), |g| &g.operations);
        events(receiver, (member, live))
    }
}

/// The tick stream: the same state machine as the demo gRPC upstream's.
struct Ticker {
    next_seq: i32,
    limit: Option<i32>,
    fail_at: Option<i32>,
    every: Duration,
    /// When the pending tick is due.
    due: Instant,
    timer: Pin<Box<Sleep>>,
    done: bool,
    _live: Live,
}

impl Stream for Ticker {
    type Item = Result<Tick, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let seq = this.next_seq;
        if this.done || this.limit.is_some_and(|limit| seq > limit) {
            return Poll::Ready(None);
        }
        if this.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if this.fail_at == Some(seq) {
            this.done = true;
            return Poll::Ready(Some(Err(Error::new(format!(
                "tick {seq} failed on purpose"
            )))));
        }
        this.next_seq += 1;
        let now = Instant::now();
        this.due += this.every;
        if this.due < now {
            this.due = now + this.every;
        }
        let due = this.due;
        this.timer.as_mut().reset(due);
        Poll::Ready(Some(Ok(Tick { seq })))
    }
}

type DemoSchema = Schema<Query, Mutation, SubscriptionRoot>;

#[derive(Clone)]
struct App {
    schema: DemoSchema,
    gauges: Arc<Gauges>,
    hub: Arc<Hub>,
}

async fn graphql_ws(
    State(app): State<App>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |stream| async move {
            let _live = Live::new(app.gauges.clone(), |g| &g.connections);
            GraphQLWebSocket::new(stream, app.schema, protocol)
                .serve()
                .await
        })
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count().saturating_sub(1))
        .unwrap_or(0);
    let rss_kb = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!(
        "bench_connections {}\nbench_operations {}\nbench_shared_streams {}\nprocess_open_fds {}\nprocess_resident_memory_bytes {}\n",
        app.gauges.connections.load(Ordering::Relaxed),
        app.gauges.operations.load(Ordering::Relaxed),
        app.hub.shared_streams(),
        fds,
        rss_kb * 1024
    )
}

#[tokio::main]
async fn main() {
    let mut listen: SocketAddr = "127.0.0.1:8081".parse().expect("valid default address");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(value)) => match value.parse() {
                Ok(addr) => listen = addr,
                Err(e) => {
                    eprintln!("--listen {value}: {e}");
                    std::process::exit(2);
                }
            },
            _ => {
                eprintln!("usage: bench-async-graphql [--listen ADDR]");
                std::process::exit(2);
            }
        }
    }
    let gauges = Arc::new(Gauges::default());
    let hub = Arc::new(Hub::new());
    let schema = Schema::build(
        Query,
        Mutation { hub: hub.clone() },
        SubscriptionRoot {
            gauges: gauges.clone(),
            hub: hub.clone(),
        },
    )
    .finish();
    let app = App {
        schema: schema.clone(),
        gauges,
        hub,
    };
    let router = Router::new()
        .route(
            "/graphql",
            get(graphql_ws).post_service(GraphQL::new(schema)),
        )
        .route("/metrics", get(metrics))
        .with_state(app);
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    println!("listening on http://{addr}");
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    // TCP_NODELAY, as Terminus and Node's `ws` set it: without it, Nagle's
    // algorithm and the client's delayed ACKs stall small frames by ~40 ms.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("server error: {e}");
        std::process::exit(1);
    }
}
