//! The rules of the demo upstream `terminus.demo.v1.Demo`
//! (`proto/proto/terminus/demo/v1/demo.proto`), once, as a pure model.
//!
//! Two faces drive it: the real gRPC server that `terminus demo` embeds
//! (`runtime-smol/src/demo_upstream.rs`, on the wall clock) and the offline
//! upstream of the browser simulator (`wasm/src/upstream.rs`, on a virtual
//! clock). Both take their bounds and integer widths from here, and
//! `runtime-smol/tests/demo_faces.rs` checks that they agree.
//!
//! - `Hello(name)` answers `Hello, <name>!` (`Hello, world!` for an empty name).
//! - `Ticks(every_ms, limit?, fail_at?)` streams `Tick{seq: 1}`, `{seq: 2}`,
//!   ...: on a fixed schedule, tick `n` due `n` periods after the stream
//!   starts, so a tick read late does not push the next ones back (the
//!   schedule does not drift by the reader's lateness); a tick read more
//!   than a whole period late re-bases the schedule (the next one is due a
//!   period after that read), so no burst of ticks follows a stall. The
//!   period is `every_ms`, at least
//!   [`MIN_TICK_MS`]. With `limit`, the stream ends right after tick
//!   `limit` (at once for a `limit` of 0 or less); when it reaches seq
//!   `fail_at` (before ending), it fails with gRPC status `INTERNAL` and the
//!   message `tick <seq> failed on purpose` instead of sending that tick.
//!   Integers are the proto's `int32`; the stream ends after tick
//!   `i32::MAX`, whose successor `int32` cannot carry.
//! - `Clock(every_ms)` is one clock for every caller: it streams
//!   `Tick{seq}` at each instant that is a whole number of periods after
//!   the upstream's epoch (the real server's start, the simulator's zero),
//!   with `seq` the periods elapsed since the epoch. Every stream of the
//!   same period carries the same seq at the same instant, whichever
//!   gateway opened it; a late reader gets the latest seq (missed ones are
//!   skipped). The first tick is the first whole period after the start.
//!   `every_ms` below [`MIN_CLOCK_MS`] is `INVALID_ARGUMENT`; the stream
//!   ends when seq would pass `i32::MAX`.
//! - `Rooms.Events(name)` follows a room and `Rooms.Say(room, text)` posts
//!   to it ([`Rooms`]): each room numbers its events from 1; `Say` queues
//!   the event for every current subscriber of the room exactly once and
//!   answers `ok: true` with the number reached (0 for a room nobody
//!   follows, which does not exist and uses no seq). A room is forgotten
//!   when its last subscriber leaves. Bounded by [`RoomLimits`]: room
//!   name (1 to 64 bytes) and text (1,024 bytes) lengths are
//!   `INVALID_ARGUMENT`; rooms, subscribers and each subscriber's queue of
//!   unread events are `RESOURCE_EXHAUSTED` (a subscriber whose queue is
//!   full fails alone; `Say` and the others go on).

use crate::time::Millis;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// The unary method, fully qualified as `@grpc(method:)` names it.
pub const HELLO_METHOD: &str = "terminus.demo.v1.Demo/Hello";
/// The server-streaming method, fully qualified.
pub const TICKS_METHOD: &str = "terminus.demo.v1.Demo/Ticks";
/// The gRPC status a failed tick ends its stream with, by its canonical
/// name (the gateway reports it as `extensions.grpcStatus`).
pub const FAILED_TICK_STATUS: &str = "INTERNAL";
/// The smallest tick period honoured, in ms: `everyMs` of 0 or less ticks
/// this often (and a virtual clock still moves).
pub const MIN_TICK_MS: u64 = 1;

/// `Hello`'s answer to `name`.
pub fn hello_message(name: &str) -> String {
    let name = if name.is_empty() { "world" } else { name };
    format!("Hello, {name}!")
}

/// `HelloReply` as proto3 JSON.
pub fn hello_reply_json(name: &str) -> Value {
    json!({ "message": hello_message(name) })
}

/// The name a `HelloRequest` in proto3 JSON carries (absent: empty).
pub fn hello_name_from_json(request: &Value) -> &str {
    request.get("name").and_then(Value::as_str).unwrap_or("")
}

/// A `TicksRequest`, with the proto's widths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TicksRequest {
    /// `every_ms`: the period asked for.
    pub every_ms: i32,
    /// `limit`: how many ticks before the stream ends.
    pub limit: Option<i32>,
    /// `fail_at`: the seq at which the stream fails.
    pub fail_at: Option<i32>,
}

impl TicksRequest {
    /// Reads a `TicksRequest` in proto3 JSON (`everyMs`, `limit`,
    /// `failAt`; absent or null is the default). A value that is not an
    /// `int32` is an error, as it is for the gateway's protobuf encoding.
    pub fn from_json(request: &Value) -> Result<TicksRequest, String> {
        let int =
            |field: &str| json_int32(request, "TicksRequest", field).map_err(|error| error.message);
        Ok(TicksRequest {
            every_ms: int("everyMs")?.unwrap_or(0),
            limit: int("limit")?,
            fail_at: int("failAt")?,
        })
    }

    /// The period the stream ticks at, in ms: `every_ms`, at least
    /// [`MIN_TICK_MS`].
    pub fn period_ms(&self) -> u64 {
        u64::try_from(self.every_ms).unwrap_or(0).max(MIN_TICK_MS)
    }
}

/// `Tick` as proto3 JSON.
pub fn tick_json(seq: i32) -> Value {
    json!({ "seq": seq })
}

/// What a `Ticks` stream does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickStep {
    /// Send `Tick{seq}`.
    Tick(i32),
    /// End the stream with status `OK`.
    End,
    /// End the stream with status `INTERNAL` and this message.
    Failed(String),
}

/// One `Ticks` stream; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticks {
    request: TicksRequest,
    /// The seq of the next tick; `None` once `int32` is exhausted.
    next_seq: Option<i32>,
    /// When the next step is due.
    due: Millis,
    /// The stream ended or failed.
    finished: bool,
}

impl Ticks {
    /// A stream that starts at `now`.
    pub fn start(now: Millis, request: TicksRequest) -> Ticks {
        let mut ticks = Ticks {
            request,
            next_seq: Some(1),
            due: Millis(now.0.saturating_add(request.period_ms())),
            finished: false,
        };
        if ticks.ending() {
            ticks.due = now;
        }
        ticks
    }

    /// The request the stream runs.
    pub fn request(&self) -> TicksRequest {
        self.request
    }

    /// Whether the next step is the end of the stream (the limit is
    /// reached, or `int32` is exhausted): it comes without waiting.
    fn ending(&self) -> bool {
        match self.next_seq {
            None => true,
            Some(seq) => self.request.limit.is_some_and(|limit| seq > limit),
        }
    }

    /// The step due at `now`, if any; `None` before
    /// [`poll_timeout`](Self::poll_timeout) or once finished.
    pub fn poll(&mut self, now: Millis) -> Option<TickStep> {
        if self.finished {
            return None;
        }
        if self.ending() {
            self.finished = true;
            return Some(TickStep::End);
        }
        if now < self.due {
            return None;
        }
        let seq = self.next_seq?;
        if self.request.fail_at == Some(seq) {
            self.finished = true;
            return Some(TickStep::Failed(format!("tick {seq} failed on purpose")));
        }
        self.next_seq = seq.checked_add(1);
        self.due = if self.ending() {
            // The stream ends right after its last tick.
            now
        } else {
            // On the fixed schedule; re-based when a whole period was
            // missed.
            let period = self.request.period_ms();
            let next = self.due.0.saturating_add(period);
            if next < now.0 {
                Millis(now.0.saturating_add(period))
            } else {
                Millis(next)
            }
        };
        Some(TickStep::Tick(seq))
    }

    /// When the next step is due; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Millis> {
        (!self.finished).then_some(self.due)
    }

    /// Whether the stream has ended or failed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// The shared clock's method, fully qualified.
pub const CLOCK_METHOD: &str = "terminus.demo.v1.Demo/Clock";
/// The server stream of a room's events, fully qualified.
pub const ROOM_EVENTS_METHOD: &str = "terminus.demo.v1.Rooms/Events";
/// The unary call that posts to a room, fully qualified.
pub const SAY_METHOD: &str = "terminus.demo.v1.Rooms/Say";

/// A call the demo service refuses or ends with an error status, by its
/// gRPC code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoError {
    /// The gRPC status code: [`DemoError::INVALID_ARGUMENT`] or
    /// [`DemoError::RESOURCE_EXHAUSTED`].
    pub code: u32,
    /// The status message.
    pub message: String,
}

impl DemoError {
    /// gRPC `INVALID_ARGUMENT`: the request breaks a rule.
    pub const INVALID_ARGUMENT: u32 = 3;
    /// gRPC `RESOURCE_EXHAUSTED`: a bound of the service is reached.
    pub const RESOURCE_EXHAUSTED: u32 = 8;

    fn invalid(message: String) -> DemoError {
        DemoError {
            code: Self::INVALID_ARGUMENT,
            message,
        }
    }

    fn exhausted(message: String) -> DemoError {
        DemoError {
            code: Self::RESOURCE_EXHAUSTED,
            message,
        }
    }

    /// The status code's canonical name (`extensions.grpcStatus`).
    pub fn status_name(&self) -> &'static str {
        match self.code {
            Self::INVALID_ARGUMENT => "INVALID_ARGUMENT",
            _ => "RESOURCE_EXHAUSTED",
        }
    }

    /// What the gateway makes of this status (its `extensions.code`).
    pub fn failure_kind(&self) -> crate::FailureKind {
        match self.code {
            Self::INVALID_ARGUMENT => crate::FailureKind::BadInput,
            _ => crate::FailureKind::Busy,
        }
    }
}

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status_name(), self.message)
    }
}

/// Reads an `int32` field of a request in proto3 JSON (absent or null:
/// `None`).
fn json_int32(request: &Value, message: &str, field: &str) -> Result<Option<i32>, DemoError> {
    match request.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                DemoError::invalid(format!("{message}.{field} must be an int32, got {v}"))
            }),
    }
}

/// Reads a `string` field of a request in proto3 JSON (absent or null:
/// empty).
fn json_string<'a>(request: &'a Value, message: &str, field: &str) -> Result<&'a str, DemoError> {
    match request.get(field) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(DemoError::invalid(format!(
            "{message}.{field} must be a string, got {v}"
        ))),
    }
}

/// A `ClockRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockRequest {
    /// `every_ms`: the clock's period; at least [`MIN_CLOCK_MS`].
    pub every_ms: i32,
}

/// The smallest clock period, in ms; a smaller `every_ms` is
/// `INVALID_ARGUMENT`.
pub const MIN_CLOCK_MS: i32 = 1;

impl ClockRequest {
    /// Reads a `ClockRequest` in proto3 JSON (`everyMs`).
    pub fn from_json(request: &Value) -> Result<ClockRequest, DemoError> {
        Ok(ClockRequest {
            every_ms: json_int32(request, "ClockRequest", "everyMs")?.unwrap_or(0),
        })
    }
}

/// One `Clock` stream: the clock of the upstream's epoch, read by one
/// caller; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    period: u64,
    /// When the next tick is due, in ms since the epoch.
    due: Millis,
    finished: bool,
}

impl Clock {
    /// A stream that starts at `now`, in ms since the upstream's epoch. Its
    /// first tick is at the first whole period after `now`.
    pub fn start(now: Millis, request: ClockRequest) -> Result<Clock, DemoError> {
        if request.every_ms < MIN_CLOCK_MS {
            return Err(DemoError::invalid(format!(
                "clock everyMs must be at least {MIN_CLOCK_MS}, got {}",
                request.every_ms
            )));
        }
        let period = request.every_ms as u64;
        Ok(Clock {
            period,
            due: Millis((now.0 / period).saturating_add(1).saturating_mul(period)),
            finished: false,
        })
    }

    /// The period in ms.
    pub fn period_ms(&self) -> u64 {
        self.period
    }

    /// The tick due at `now` (ms since the epoch), if any: `Tick(seq)` with
    /// seq the whole periods elapsed since the epoch (ticks missed by a late
    /// reader are skipped), or `End` once seq would pass `i32::MAX`.
    pub fn poll(&mut self, now: Millis) -> Option<TickStep> {
        if self.finished || now < self.due {
            return None;
        }
        let seq = now.0 / self.period;
        match i32::try_from(seq) {
            Ok(seq) => {
                self.due = Millis((seq as u64 + 1).saturating_mul(self.period));
                Some(TickStep::Tick(seq))
            }
            Err(_) => {
                self.finished = true;
                Some(TickStep::End)
            }
        }
    }

    /// When the next tick is due, in ms since the epoch; `None` once ended.
    pub fn poll_timeout(&self) -> Option<Millis> {
        (!self.finished).then_some(self.due)
    }
}

/// The bounds of the rooms service. Every queue and table is bounded by
/// these; `docs/schema.md` ("The demo's rooms") documents the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLimits {
    /// Rooms at once (a room exists while it has subscribers).
    pub max_rooms: usize,
    /// Subscribers (open `Events` streams) at once, over all rooms.
    pub max_subscribers: usize,
    /// The longest room name, in bytes of UTF-8.
    pub max_room_name_bytes: usize,
    /// The longest text `Say` accepts, in bytes of UTF-8.
    pub max_text_bytes: usize,
    /// Events queued for one subscriber that has not read them yet; one
    /// more fails that subscriber with `RESOURCE_EXHAUSTED`, and `Say` and
    /// the other subscribers go on.
    pub subscriber_queue: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        RoomLimits {
            max_rooms: 1_000,
            max_subscribers: 100_000,
            max_room_name_bytes: 64,
            max_text_bytes: 1_024,
            subscriber_queue: 256,
        }
    }
}

/// A subscriber of a room: one `Events` stream. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriberId(pub u64);

/// One message of a room's stream (`RoomEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEvent {
    /// The room's name.
    pub room: Arc<str>,
    /// The event's number in its room, from 1.
    pub seq: i32,
    /// What was said.
    pub text: Arc<str>,
}

impl RoomEvent {
    /// `RoomEvent` as proto3 JSON.
    pub fn to_json(&self) -> Value {
        json!({ "room": &*self.room, "seq": self.seq, "text": &*self.text })
    }
}

/// A `RoomRequest`: the room to follow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomRequest {
    /// `name`.
    pub name: String,
}

impl RoomRequest {
    /// Reads a `RoomRequest` in proto3 JSON (`name`).
    pub fn from_json(request: &Value) -> Result<RoomRequest, DemoError> {
        Ok(RoomRequest {
            name: json_string(request, "RoomRequest", "name")?.to_owned(),
        })
    }
}

/// A `SayRequest`: what to post where.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SayRequest {
    /// `room`.
    pub room: String,
    /// `text`.
    pub text: String,
}

impl SayRequest {
    /// Reads a `SayRequest` in proto3 JSON (`room`, `text`).
    pub fn from_json(request: &Value) -> Result<SayRequest, DemoError> {
        Ok(SayRequest {
            room: json_string(request, "SayRequest", "room")?.to_owned(),
            text: json_string(request, "SayRequest", "text")?.to_owned(),
        })
    }
}

/// What a `Say` did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Said {
    /// Subscribers that got the event queued.
    pub delivered: usize,
    /// Subscribers with something new to read (the event, or their
    /// failure): the ones a runtime wakes.
    pub notify: Vec<SubscriberId>,
}

impl Said {
    /// `SayReply` as proto3 JSON.
    pub fn reply_json(&self) -> Value {
        json!({ "ok": true, "delivered": i32::try_from(self.delivered).unwrap_or(i32::MAX) })
    }
}

/// What a room subscriber reads next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomStep {
    /// An event of its room.
    Event(RoomEvent),
    /// The stream fails with this status (the subscriber fell behind).
    Failed(DemoError),
}

#[derive(Debug)]
struct Room {
    /// The seq of the room's next event.
    next_seq: i32,
    subscribers: BTreeSet<SubscriberId>,
}

#[derive(Debug)]
struct Subscriber {
    room: Arc<str>,
    queue: VecDeque<RoomEvent>,
    failed: Option<DemoError>,
}

/// The rooms service's state: rooms, their subscribers and the events
/// each has not read yet. See the module documentation; every bound is in
/// [`RoomLimits`].
#[derive(Debug)]
pub struct Rooms {
    limits: RoomLimits,
    rooms: BTreeMap<Arc<str>, Room>,
    subscribers: BTreeMap<SubscriberId, Subscriber>,
    next_id: u64,
}

impl Rooms {
    /// No rooms, with these bounds.
    pub fn new(limits: RoomLimits) -> Rooms {
        Rooms {
            limits,
            rooms: BTreeMap::new(),
            subscribers: BTreeMap::new(),
            next_id: 0,
        }
    }

    /// The bounds.
    pub fn limits(&self) -> RoomLimits {
        self.limits
    }

    fn check_name(&self, name: &str) -> Result<(), DemoError> {
        if name.is_empty() {
            return Err(DemoError::invalid("room name must not be empty".into()));
        }
        if name.len() > self.limits.max_room_name_bytes {
            return Err(DemoError::invalid(format!(
                "room name is {} bytes, more than the {} allowed",
                name.len(),
                self.limits.max_room_name_bytes
            )));
        }
        Ok(())
    }

    /// `Events(name)`: a new subscriber of room `name`, which gets every
    /// event said there from now on. Creates the room when it has none.
    pub fn join(&mut self, name: &str) -> Result<SubscriberId, DemoError> {
        self.check_name(name)?;
        if self.subscribers.len() >= self.limits.max_subscribers {
            return Err(DemoError::exhausted(format!(
                "the rooms service holds its maximum of {} subscribers",
                self.limits.max_subscribers
            )));
        }
        if !self.rooms.contains_key(name) && self.rooms.len() >= self.limits.max_rooms {
            return Err(DemoError::exhausted(format!(
                "the rooms service holds its maximum of {} rooms",
                self.limits.max_rooms
            )));
        }
        self.next_id += 1;
        let id = SubscriberId(self.next_id);
        let (room_name, room) = match self.rooms.get_key_value(name) {
            Some((key, _)) => {
                let key = key.clone();
                let room = self.rooms.get_mut(&key).expect("just found");
                (key, room)
            }
            None => {
                let key: Arc<str> = Arc::from(name);
                let room = self.rooms.entry(key.clone()).or_insert(Room {
                    next_seq: 1,
                    subscribers: BTreeSet::new(),
                });
                (key, room)
            }
        };
        room.subscribers.insert(id);
        self.subscribers.insert(
            id,
            Subscriber {
                room: room_name,
                queue: VecDeque::new(),
                failed: None,
            },
        );
        Ok(id)
    }

    /// The subscriber's stream ended (for any reason): forgets it, and its
    /// room when it was the room's last subscriber. Unknown ids are ignored.
    pub fn leave(&mut self, id: SubscriberId) {
        if let Some(subscriber) = self.subscribers.remove(&id) {
            self.remove_from_room(&subscriber.room, id);
        }
    }

    fn remove_from_room(&mut self, name: &str, id: SubscriberId) {
        if let Some(room) = self.rooms.get_mut(name) {
            room.subscribers.remove(&id);
            if room.subscribers.is_empty() {
                self.rooms.remove(name);
            }
        }
    }

    /// `Say(room, text)`: queues the next event of `room` for every current
    /// subscriber once. A subscriber whose queue is full fails instead
    /// (its queue is dropped and it leaves the room); the others are not
    /// held up. A room without subscribers does not exist: nothing is
    /// delivered and no seq is used.
    pub fn say(&mut self, room: &str, text: &str) -> Result<Said, DemoError> {
        self.check_name(room)?;
        if text.len() > self.limits.max_text_bytes {
            return Err(DemoError::invalid(format!(
                "text is {} bytes, more than the {} allowed",
                text.len(),
                self.limits.max_text_bytes
            )));
        }
        let mut said = Said::default();
        let Some((name, state)) = self.rooms.get_key_value(room) else {
            return Ok(said);
        };
        let name = name.clone();
        let seq = state.next_seq;
        let Some(next_seq) = seq.checked_add(1) else {
            return Err(DemoError::exhausted(format!(
                "room {room} has used up its int32 seq"
            )));
        };
        let event = RoomEvent {
            room: name.clone(),
            seq,
            text: Arc::from(text),
        };
        let members: Vec<SubscriberId> = state.subscribers.iter().copied().collect();
        let queue_bound = self.limits.subscriber_queue;
        let mut fallen = Vec::new();
        for id in members {
            let Some(subscriber) = self.subscribers.get_mut(&id) else {
                continue;
            };
            if subscriber.queue.len() >= queue_bound {
                subscriber.queue = VecDeque::new();
                subscriber.failed = Some(DemoError::exhausted(format!(
                    "room subscriber fell {queue_bound} events behind"
                )));
                fallen.push(id);
            } else {
                subscriber.queue.push_back(event.clone());
                said.delivered += 1;
            }
            said.notify.push(id);
        }
        if let Some(state) = self.rooms.get_mut(&name) {
            state.next_seq = next_seq;
        }
        for id in fallen {
            self.remove_from_room(&name, id);
        }
        Ok(said)
    }

    /// What subscriber `id` reads next, if anything: its events in order,
    /// or its failure. `None` when it has nothing (or is unknown).
    pub fn poll(&mut self, id: SubscriberId) -> Option<RoomStep> {
        let subscriber = self.subscribers.get_mut(&id)?;
        if let Some(event) = subscriber.queue.pop_front() {
            return Some(RoomStep::Event(event));
        }
        subscriber.failed.take().map(RoomStep::Failed)
    }

    /// Rooms that exist (have at least one subscriber).
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    /// Subscribers (open `Events` streams), over all rooms.
    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    /// The subscribers of room `name` (0 when it does not exist).
    pub fn room_subscribers(&self, name: &str) -> usize {
        self.rooms
            .get(name)
            .map_or(0, |room| room.subscribers.len())
    }

    /// Every room with its subscriber count, by name.
    pub fn room_counts(&self) -> Vec<(String, usize)> {
        self.rooms
            .iter()
            .map(|(name, room)| (name.to_string(), room.subscribers.len()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a stream from `start` to its end on a virtual clock: each step
    /// with the instant it came.
    fn run(start: u64, request: TicksRequest, max_steps: usize) -> Vec<(u64, TickStep)> {
        let mut ticks = Ticks::start(Millis(start), request);
        let mut out = Vec::new();
        while let Some(at) = ticks.poll_timeout() {
            if at.0 > start {
                assert_eq!(
                    ticks.poll(Millis(at.0 - 1)),
                    None,
                    "nothing before it is due"
                );
            }
            while let Some(step) = ticks.poll(at) {
                out.push((at.0, step));
            }
            if out.len() >= max_steps {
                break;
            }
        }
        out
    }

    #[test]
    fn hello_greets_the_name_or_the_world() {
        assert_eq!(hello_message("Ada"), "Hello, Ada!");
        assert_eq!(hello_message(""), "Hello, world!");
        assert_eq!(
            hello_reply_json(hello_name_from_json(&json!({}))),
            json!({"message": "Hello, world!"})
        );
    }

    #[test]
    fn ticks_every_period_and_end_right_after_the_limit() {
        let request = TicksRequest {
            every_ms: 100,
            limit: Some(3),
            fail_at: None,
        };
        assert_eq!(
            run(1_000, request, 100),
            vec![
                (1_100, TickStep::Tick(1)),
                (1_200, TickStep::Tick(2)),
                (1_300, TickStep::Tick(3)),
                (1_300, TickStep::End),
            ]
        );
    }

    #[test]
    fn a_limit_of_zero_or_less_ends_at_once_and_fail_at_past_the_limit_never_fires() {
        for limit in [0, -1, i32::MIN] {
            let request = TicksRequest {
                every_ms: i32::MAX,
                limit: Some(limit),
                fail_at: Some(1),
            };
            assert_eq!(run(5, request, 10), vec![(5, TickStep::End)]);
        }
        let request = TicksRequest {
            every_ms: 10,
            limit: Some(1),
            fail_at: Some(2),
        };
        assert_eq!(
            run(0, request, 10),
            vec![(10, TickStep::Tick(1)), (10, TickStep::End)]
        );
    }

    #[test]
    fn fail_at_replaces_that_tick_with_the_failure() {
        let request = TicksRequest {
            every_ms: 10,
            limit: None,
            fail_at: Some(2),
        };
        assert_eq!(
            run(0, request, 10),
            vec![
                (10, TickStep::Tick(1)),
                (20, TickStep::Failed("tick 2 failed on purpose".into())),
            ]
        );
    }

    #[test]
    fn the_period_is_at_least_the_minimum() {
        for every_ms in [0, -5, i32::MIN] {
            let request = TicksRequest {
                every_ms,
                limit: Some(2),
                fail_at: None,
            };
            assert_eq!(request.period_ms(), MIN_TICK_MS);
            let steps = run(0, request, 10);
            assert_eq!(steps[0].0, MIN_TICK_MS);
            assert_eq!(steps[1].0, 2 * MIN_TICK_MS);
        }
        let huge = TicksRequest {
            every_ms: i32::MAX,
            ..TicksRequest::default()
        };
        assert_eq!(huge.period_ms(), i32::MAX as u64);
        // The virtual clock saturates instead of wrapping.
        let ticks = Ticks::start(Millis(u64::MAX - 1), huge);
        assert_eq!(ticks.poll_timeout(), Some(Millis(u64::MAX)));
    }

    #[test]
    fn a_late_read_keeps_the_schedule_and_a_stall_re_bases_it() {
        let mut ticks = Ticks::start(
            Millis(0),
            TicksRequest {
                every_ms: 100,
                ..TicksRequest::default()
            },
        );
        // Read 7 ms late: the next tick is still due at 200, not 207.
        assert_eq!(ticks.poll(Millis(107)), Some(TickStep::Tick(1)));
        assert_eq!(ticks.poll_timeout(), Some(Millis(200)));
        assert_eq!(ticks.poll(Millis(200)), Some(TickStep::Tick(2)));
        // Read 99 ms late: the next is due at once, on the schedule.
        assert_eq!(ticks.poll(Millis(399)), Some(TickStep::Tick(3)));
        assert_eq!(ticks.poll_timeout(), Some(Millis(400)));
        // A stall past a whole period: no burst, a period after the read.
        assert_eq!(ticks.poll(Millis(650)), Some(TickStep::Tick(4)));
        assert_eq!(ticks.poll_timeout(), Some(Millis(750)));
        assert_eq!(ticks.poll(Millis(749)), None);
        assert_eq!(ticks.poll(Millis(750)), Some(TickStep::Tick(5)));
    }

    #[test]
    fn the_stream_ends_after_the_last_int32_seq() {
        let mut ticks = Ticks::start(Millis(0), TicksRequest::default());
        ticks.next_seq = Some(i32::MAX);
        assert_eq!(ticks.poll(Millis(1)), Some(TickStep::Tick(i32::MAX)));
        assert_eq!(ticks.poll_timeout(), Some(Millis(1)));
        assert_eq!(ticks.poll(Millis(1)), Some(TickStep::End));
        assert!(ticks.is_finished());
        assert_eq!(ticks.poll_timeout(), None);
        assert_eq!(ticks.poll(Millis(u64::MAX)), None);
    }

    #[test]
    fn requests_read_from_proto3_json_with_int32_widths() {
        assert_eq!(
            TicksRequest::from_json(&json!({"everyMs": 5, "limit": 2, "failAt": null})),
            Ok(TicksRequest {
                every_ms: 5,
                limit: Some(2),
                fail_at: None
            })
        );
        assert_eq!(
            TicksRequest::from_json(&json!({})),
            Ok(TicksRequest::default())
        );
        assert!(TicksRequest::from_json(&json!({"everyMs": 2_147_483_648_i64})).is_err());
        assert!(TicksRequest::from_json(&json!({"limit": "3"})).is_err());
    }
}

#[cfg(test)]
mod room_tests {
    use super::*;

    fn events(rooms: &mut Rooms, id: SubscriberId) -> Vec<(String, i32, String)> {
        let mut out = Vec::new();
        while let Some(step) = rooms.poll(id) {
            match step {
                RoomStep::Event(e) => out.push((e.room.to_string(), e.seq, e.text.to_string())),
                RoomStep::Failed(error) => panic!("unexpected failure {error}"),
            }
        }
        out
    }

    #[test]
    fn say_reaches_every_member_once_with_per_room_seq_and_rooms_are_isolated() {
        let mut rooms = Rooms::new(RoomLimits::default());
        let a1 = rooms.join("a").unwrap();
        let a2 = rooms.join("a").unwrap();
        let b1 = rooms.join("b").unwrap();
        assert_eq!((rooms.rooms(), rooms.subscribers()), (2, 3));
        let said = rooms.say("a", "hi").unwrap();
        assert_eq!(said.delivered, 2);
        assert_eq!(said.notify, vec![a1, a2]);
        assert_eq!(said.reply_json(), json!({"ok": true, "delivered": 2}));
        rooms.say("b", "yo").unwrap();
        rooms.say("a", "again").unwrap();
        let want = vec![
            ("a".into(), 1, "hi".into()),
            ("a".into(), 2, "again".into()),
        ];
        assert_eq!(events(&mut rooms, a1), want);
        assert_eq!(events(&mut rooms, a2), want);
        assert_eq!(events(&mut rooms, b1), vec![("b".into(), 1, "yo".into())]);
        // A late joiner gets events from then on.
        let a3 = rooms.join("a").unwrap();
        rooms.say("a", "three").unwrap();
        assert_eq!(
            events(&mut rooms, a3),
            vec![("a".into(), 3, "three".into())]
        );
    }

    #[test]
    fn a_room_is_forgotten_with_its_last_subscriber_and_starts_over() {
        let mut rooms = Rooms::new(RoomLimits::default());
        let a = rooms.join("a").unwrap();
        let b = rooms.join("a").unwrap();
        rooms.say("a", "x").unwrap();
        rooms.leave(a);
        assert_eq!((rooms.rooms(), rooms.room_subscribers("a")), (1, 1));
        rooms.leave(b);
        rooms.leave(b);
        assert_eq!((rooms.rooms(), rooms.subscribers()), (0, 0));
        // Nobody follows it: nothing delivered, no room made, no seq used.
        assert_eq!(rooms.say("a", "into the void").unwrap().delivered, 0);
        assert_eq!(rooms.rooms(), 0);
        let c = rooms.join("a").unwrap();
        rooms.say("a", "fresh").unwrap();
        assert_eq!(events(&mut rooms, c), vec![("a".into(), 1, "fresh".into())]);
        assert_eq!(rooms.room_counts(), vec![("a".to_owned(), 1)]);
    }

    #[test]
    fn bad_names_and_texts_are_invalid_arguments() {
        let limits = RoomLimits::default();
        let mut rooms = Rooms::new(limits);
        let empty = rooms.join("").unwrap_err();
        assert_eq!(empty.code, DemoError::INVALID_ARGUMENT);
        assert_eq!(empty.message, "room name must not be empty");
        let long = "r".repeat(limits.max_room_name_bytes + 1);
        assert!(rooms
            .join(&long)
            .unwrap_err()
            .message
            .contains("65 bytes, more than the 64 allowed"));
        assert!(rooms.join(&"r".repeat(limits.max_room_name_bytes)).is_ok());
        assert_eq!(
            rooms.say("", "x").unwrap_err().code,
            DemoError::INVALID_ARGUMENT
        );
        let text = rooms
            .say("a", &"t".repeat(limits.max_text_bytes + 1))
            .unwrap_err();
        assert_eq!(
            text.message,
            "text is 1025 bytes, more than the 1024 allowed"
        );
        assert_eq!(text.failure_kind(), crate::FailureKind::BadInput);
        assert!(rooms.say("a", &"t".repeat(limits.max_text_bytes)).is_ok());
        assert!(rooms.say("a", "").is_ok());
    }

    #[test]
    fn rooms_and_subscribers_are_bounded() {
        let mut rooms = Rooms::new(RoomLimits {
            max_rooms: 2,
            max_subscribers: 3,
            ..RoomLimits::default()
        });
        rooms.join("a").unwrap();
        let b = rooms.join("b").unwrap();
        let full = rooms.join("c").unwrap_err();
        assert_eq!(full.code, DemoError::RESOURCE_EXHAUSTED);
        assert!(full.message.contains("maximum of 2 rooms"), "{full}");
        rooms.join("a").unwrap();
        assert!(rooms
            .join("a")
            .unwrap_err()
            .message
            .contains("maximum of 3 subscribers"));
        rooms.leave(b);
        rooms.join("c").unwrap();
    }

    #[test]
    fn a_slow_subscriber_fails_alone_and_say_goes_on() {
        let mut rooms = Rooms::new(RoomLimits {
            subscriber_queue: 2,
            ..RoomLimits::default()
        });
        let slow = rooms.join("a").unwrap();
        let quick = rooms.join("a").unwrap();
        for i in 1..=2 {
            rooms.say("a", &i.to_string()).unwrap();
            assert_eq!(events(&mut rooms, quick).len(), 1);
        }
        let said = rooms.say("a", "3").unwrap();
        assert_eq!(said.delivered, 1);
        assert_eq!(said.notify, vec![slow, quick]);
        match rooms.poll(slow) {
            Some(RoomStep::Failed(error)) => {
                assert_eq!(error.code, DemoError::RESOURCE_EXHAUSTED);
                assert_eq!(error.message, "room subscriber fell 2 events behind");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rooms.poll(slow), None);
        assert_eq!(rooms.room_subscribers("a"), 1);
        assert_eq!(events(&mut rooms, quick), vec![("a".into(), 3, "3".into())]);
        rooms.say("a", "4").unwrap();
        assert_eq!(events(&mut rooms, quick).len(), 1);
        rooms.leave(slow);
        rooms.leave(quick);
        assert_eq!((rooms.rooms(), rooms.subscribers()), (0, 0));
    }

    #[test]
    fn clocks_of_one_period_tick_together_from_the_epoch() {
        let request = ClockRequest { every_ms: 50 };
        let mut early = Clock::start(Millis(10), request).unwrap();
        let mut late = Clock::start(Millis(120), request).unwrap();
        let mut on_the_edge = Clock::start(Millis(100), request).unwrap();
        assert_eq!(early.poll_timeout(), Some(Millis(50)));
        assert_eq!(late.poll_timeout(), Some(Millis(150)));
        assert_eq!(on_the_edge.poll_timeout(), Some(Millis(150)));
        assert_eq!(early.poll(Millis(49)), None);
        assert_eq!(early.poll(Millis(50)), Some(TickStep::Tick(1)));
        assert_eq!(early.poll(Millis(50)), None);
        assert_eq!(early.poll(Millis(100)), Some(TickStep::Tick(2)));
        for clock in [&mut early, &mut late, &mut on_the_edge] {
            assert_eq!(clock.poll(Millis(150)), Some(TickStep::Tick(3)));
        }
        // A late reader skips to the latest seq.
        assert_eq!(late.poll(Millis(399)), Some(TickStep::Tick(7)));
        assert_eq!(late.poll_timeout(), Some(Millis(400)));
        assert_eq!(
            ClockRequest::from_json(&json!({"everyMs": 20})),
            Ok(ClockRequest { every_ms: 20 })
        );
    }

    #[test]
    fn the_clock_refuses_a_period_below_the_minimum_and_ends_past_int32() {
        for every_ms in [0, -1, i32::MIN] {
            let error = Clock::start(Millis(0), ClockRequest { every_ms }).unwrap_err();
            assert_eq!(error.code, DemoError::INVALID_ARGUMENT);
            assert!(error.message.contains("at least 1"), "{error}");
        }
        let mut clock =
            Clock::start(Millis(i32::MAX as u64 - 1), ClockRequest { every_ms: 1 }).unwrap();
        assert_eq!(
            clock.poll(Millis(i32::MAX as u64)),
            Some(TickStep::Tick(i32::MAX))
        );
        assert_eq!(clock.poll(Millis(i32::MAX as u64 + 1)), Some(TickStep::End));
        assert_eq!(clock.poll_timeout(), None);
        assert_eq!(clock.poll(Millis(u64::MAX)), None);
        let huge = Clock::start(Millis(u64::MAX - 1), ClockRequest { every_ms: i32::MAX }).unwrap();
        assert!(huge.poll_timeout().is_some());
    }

    #[test]
    fn requests_read_from_proto3_json() {
        assert_eq!(
            SayRequest::from_json(&json!({"room": "a", "text": "hi"})),
            Ok(SayRequest {
                room: "a".into(),
                text: "hi".into()
            })
        );
        assert_eq!(
            RoomRequest::from_json(&json!({})),
            Ok(RoomRequest::default())
        );
        assert!(RoomRequest::from_json(&json!({"name": 3})).is_err());
        assert!(ClockRequest::from_json(&json!({"everyMs": "3"})).is_err());
    }
}
