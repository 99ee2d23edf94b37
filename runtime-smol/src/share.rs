//! The shared-subscription hub: carries out the effects of the core's
//! sharing table (`terminus_core::share::ShareTable`, core/src/share.rs) for
//! `@shared` fields (docs/schema.md, "`@shared`").
//!
//! - One upstream stream task per [`ShareKey`], spawned through
//!   `tasks::spawn` and owned by the hub's table of streams; the core's
//!   `Reset` drops it, which resets the gRPC stream (RST_STREAM) at once.
//! - A subscriber is one operation's call task (runtime-smol/src/execute.rs,
//!   `run_call`) holding a [`Subscription`]: it receives the stream's items
//!   from the moment it joined, then the stream's end. Dropping the
//!   subscription (the operation completed, was cancelled, its socket
//!   closed, the gateway drains) unsubscribes it; the last one leaving
//!   resets the stream.
//! - The hub never waits for a subscriber, and delivering an item costs it
//!   the same whatever the subscribers do: each stream keeps its newest
//!   `limits.shared_subscriber_queue` items in one ring (the item is stored
//!   once), wakes the subscribers waiting for it, and each subscriber reads
//!   the ring at its own pace from its own position. One that falls further
//!   behind than the ring reaches tells the core's table
//!   (`ShareTable::handle_full`), which decides by `limits.shared_lag`:
//!   `skip` (the default) goes on from the oldest item still kept, counts
//!   the missed items (`terminus_shared_skipped_total`) and tells the
//!   subscriber (its next result carries `extensions.skipped`); `close`
//!   ends that one subscriber with a `SLOW_SUBSCRIBER` error. Either way
//!   the stream goes on for the others. The stream's end is kept in the
//!   ring too, after its last items. A client that does not read at all is
//!   still closed by its connection's own bound
//!   (`limits.max_outbound_bytes`, close 1013).

use crate::tasks;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use terminus_core::share::{
    LagPolicy, ShareEffect, ShareKey, ShareTable, SharedItem, StreamEnd, StreamId, SubscriberId,
};
use terminus_core::{FailureKind, Millis, UpstreamFailure};

/// The default of `limits.shared_subscriber_queue`.
pub const DEFAULT_SUBSCRIBER_QUEUE: usize = 64;

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum SharedEvent {
    /// One stream message, shared by every subscriber (never copied by
    /// the hub; its result is encoded once per distinct selection).
    Item(SharedItem),
    /// The stream ended; nothing follows.
    End(StreamEnd),
    /// This subscriber lagged and skipped this many items (`skip` policy)
    /// just before the item that follows.
    Skipped(u64),
}

/// How a started stream reports to the hub; handed to the opener.
pub struct StreamReport {
    hub: Weak<HubShared>,
    stream: StreamId,
}

impl StreamReport {
    /// The upstream sent `item`: it goes to every current subscriber.
    pub fn item(&self, item: Value) {
        if let Some(hub) = self.hub.upgrade() {
            hub.item(self.stream, SharedItem::new(item));
        }
    }

    /// The upstream stream ended with `outcome`: every subscriber ends
    /// with it.
    pub fn end(&self, outcome: StreamEnd) {
        if let Some(hub) = self.hub.upgrade() {
            hub.end(self.stream, outcome);
        }
    }
}

/// The future that runs one upstream stream, reporting through its
/// [`StreamReport`]; dropping it resets the stream.
pub type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One live shared stream as `/admin` and `/admin/state` list it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SharedStreamRow {
    /// The schema field (`Subscription.clock`).
    pub field: String,
    /// The sharing key (upstream, method, request, forwarded metadata,
    /// timeouts), as JSON text.
    pub key: String,
    /// Live subscribers.
    pub subscribers: usize,
    /// Items received from the upstream so far.
    pub items: u64,
    /// Items its lagging subscribers skipped so far (one per subscriber
    /// per item; `limits.shared_lag = "skip"`).
    pub skipped: u64,
    /// Seconds since it started.
    pub age_seconds: f64,
}

/// A stream's newest items, read by every subscriber at its own pace.
struct Ring {
    state: Mutex<RingState>,
    /// Notified on every item and on the end.
    changed: event_listener::Event,
}

struct RingState {
    /// At most the hub's bound, oldest first.
    items: VecDeque<SharedItem>,
    /// The number of `items[0]` in the stream (items are numbered from 0).
    first: u64,
    /// The stream's end, after its last item.
    end: Option<StreamEnd>,
}

impl Ring {
    fn new() -> Arc<Ring> {
        Arc::new(Ring {
            state: Mutex::new(RingState {
                items: VecDeque::new(),
                first: 0,
                end: None,
            }),
            changed: event_listener::Event::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RingState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `item` (dropping the oldest beyond `bound`) and wakes the
    /// subscribers waiting.
    fn push(&self, item: SharedItem, bound: usize) {
        {
            let mut state = self.lock();
            if state.items.len() >= bound {
                state.items.pop_front();
                state.first += 1;
            }
            state.items.push_back(item);
        }
        self.changed.notify(usize::MAX);
    }

    fn end(&self, outcome: StreamEnd) {
        {
            let mut state = self.lock();
            if state.end.is_none() {
                state.end = Some(outcome);
            }
        }
        self.changed.notify(usize::MAX);
    }
}

struct HubStream {
    field: String,
    ring: Arc<Ring>,
    /// The stream's task: dropping it resets the upstream stream.
    _task: Option<smol::Task<()>>,
}

struct HubState {
    table: ShareTable,
    streams: HashMap<StreamId, HubStream>,
    next_subscriber: u64,
}

struct HubShared {
    state: Mutex<HubState>,
    queue: usize,
    epoch: Instant,
    /// `terminus_shared_skipped_total`; kept across hot reloads.
    skipped_total: Arc<AtomicU64>,
}

/// The gateway's shared streams; see the module documentation. One per
/// gateway ([`crate::upstreams::Upstreams::shared`]).
pub struct ShareHub {
    shared: Arc<HubShared>,
}

impl std::fmt::Debug for ShareHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (streams, subscribers) = self.counts();
        f.debug_struct("ShareHub")
            .field("streams", &streams)
            .field("subscribers", &subscribers)
            .finish()
    }
}

impl Default for ShareHub {
    fn default() -> Self {
        ShareHub::new(DEFAULT_SUBSCRIBER_QUEUE, LagPolicy::default())
    }
}

/// One subscriber's place on a shared stream. Dropping it unsubscribes.
pub struct Subscription {
    hub: Weak<HubShared>,
    id: SubscriberId,
    ring: Arc<Ring>,
    /// The number of the next item this subscriber reads.
    next: u64,
    /// The item after a [`SharedEvent::Skipped`], given next.
    after_skip: Option<SharedItem>,
    /// Ended by the hub (`close` policy), or its end was given.
    done: bool,
}

impl Subscription {
    /// The next event; `None` when the hub gave up on this subscriber (it
    /// fell behind under the `close` policy: see [`slow_subscriber`]), or
    /// after the stream's end. Items this subscriber missed (`skip` policy)
    /// are told, as [`SharedEvent::Skipped`], just before the item that
    /// follows them.
    pub async fn next(&mut self) -> Option<SharedEvent> {
        if let Some(item) = self.after_skip.take() {
            return Some(SharedEvent::Item(item));
        }
        loop {
            if self.done {
                return None;
            }
            let listener = {
                let state = self.ring.lock();
                let kept = state.first + state.items.len() as u64;
                if self.next < kept {
                    let missed = state.first.saturating_sub(self.next);
                    let at = self.next.max(state.first);
                    let item = state.items[(at - state.first) as usize].clone();
                    drop(state);
                    self.next = at + 1;
                    if missed == 0 {
                        return Some(SharedEvent::Item(item));
                    }
                    // Fell behind what the ring keeps: the core decides.
                    let closed = match self.hub.upgrade() {
                        Some(hub) => hub.fell_behind(self.id, missed),
                        None => true,
                    };
                    if closed {
                        self.done = true;
                        return None;
                    }
                    self.after_skip = Some(item);
                    return Some(SharedEvent::Skipped(missed));
                }
                if let Some(end) = &state.end {
                    let end = end.clone();
                    drop(state);
                    self.done = true;
                    return Some(SharedEvent::End(end));
                }
                // Listen before the lock is released, so no item is missed.
                self.ring.changed.listen()
            };
            listener.await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.unsubscribe(self.id);
        }
    }
}

/// The failure a subscriber ends with when it could not keep up.
pub fn slow_subscriber(queue: usize) -> UpstreamFailure {
    UpstreamFailure::new(
        FailureKind::SlowSubscriber,
        format!(
            "this subscription could not keep up with its shared stream (more than {queue} events behind; limits.shared_subscriber_queue, limits.shared_lag = \"close\")"
        ),
    )
}

impl ShareHub {
    /// A hub whose subscribers may each fall `queue` items behind, and
    /// whose lagging subscribers follow `lag`.
    pub fn new(queue: usize, lag: LagPolicy) -> Self {
        ShareHub::counting_into(queue, lag, Arc::new(AtomicU64::new(0)))
    }

    /// [`ShareHub::new`] for a hot reload's new hub: it counts its skips
    /// into `previous`'s total, so `terminus_shared_skipped_total` keeps
    /// growing across reloads.
    pub fn after(previous: &ShareHub, queue: usize, lag: LagPolicy) -> Self {
        ShareHub::counting_into(queue, lag, previous.shared.skipped_total.clone())
    }

    fn counting_into(queue: usize, lag: LagPolicy, skipped_total: Arc<AtomicU64>) -> Self {
        ShareHub {
            shared: Arc::new(HubShared {
                state: Mutex::new(HubState {
                    table: ShareTable::with_policy(lag),
                    streams: HashMap::new(),
                    next_subscriber: 0,
                }),
                queue: queue.max(1),
                epoch: Instant::now(),
                skipped_total,
            }),
        }
    }

    /// Items skipped by lagging subscribers since the process started
    /// (`terminus_shared_skipped_total`).
    pub fn skipped_total(&self) -> u64 {
        self.shared.skipped_total.load(Ordering::Relaxed)
    }

    /// What happens to a lagging subscriber (`limits.shared_lag`).
    pub fn lag_policy(&self) -> LagPolicy {
        self.shared.lock().table.policy()
    }

    /// Joins the stream of `key`, or starts it with `open` (called only
    /// when no stream of `key` runs; it gets the [`StreamReport`] to report
    /// through). `field` names the schema field for `/admin`.
    pub fn subscribe(
        &self,
        key: ShareKey,
        field: &str,
        open: impl FnOnce(StreamReport) -> StreamFuture,
    ) -> Subscription {
        let hub = &self.shared;
        let mut state = hub.lock();
        let id = SubscriberId(state.next_subscriber);
        state.next_subscriber += 1;
        let now = hub.now();
        // Ids are fresh, so the table never refuses.
        let stream = state.table.handle_subscribe(now, id, key);
        let mut open = Some(open);
        let mut dropped = Vec::new();
        hub.run_effects(&mut state, None, &mut dropped, |stream| {
            let report = StreamReport {
                hub: Arc::downgrade(hub),
                stream,
            };
            let future = open.take().map(|open| open(report));
            (field.to_string(), future)
        });
        let ring = stream
            .ok()
            .and_then(|stream| state.streams.get(&stream))
            .map(|s| s.ring.clone())
            .unwrap_or_else(Ring::new);
        // It gets the items from now on (items are pushed under the hub's
        // lock, still held).
        let next = {
            let ring = ring.lock();
            ring.first + ring.items.len() as u64
        };
        drop(state);
        drop(dropped);
        Subscription {
            hub: Arc::downgrade(hub),
            id,
            ring,
            next,
            after_skip: None,
            done: false,
        }
    }

    /// Live shared streams and their subscribers.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.shared.lock();
        (state.table.stream_count(), state.table.subscriber_count())
    }

    /// The live shared streams, for `/admin`.
    pub fn rows(&self) -> Vec<SharedStreamRow> {
        let state = self.shared.lock();
        let now = self.shared.now();
        state
            .table
            .streams()
            .into_iter()
            .map(|info| SharedStreamRow {
                field: state
                    .streams
                    .get(&info.stream)
                    .map(|s| s.field.clone())
                    .unwrap_or_default(),
                key: info.key.to_string(),
                subscribers: info.subscribers,
                items: info.items,
                skipped: info.skipped,
                age_seconds: now.saturating_since(info.started_at).as_secs_f64(),
            })
            .collect()
    }

    /// How far behind its stream each subscriber may fall.
    pub fn queue(&self) -> usize {
        self.shared.queue
    }
}

impl HubShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> Millis {
        Millis(self.epoch.elapsed().as_millis() as u64)
    }

    fn unsubscribe(&self, id: SubscriberId) {
        let mut state = self.lock();
        let now = self.now();
        state.table.handle_unsubscribe(now, id);
        let mut dropped = Vec::new();
        self.run_effects(&mut state, None, &mut dropped, |_| (String::new(), None));
        drop(state);
        // Stream tasks are dropped (reset) outside the lock.
        drop(dropped);
    }

    /// Subscriber `id` missed `missed` items; the core's table decides
    /// (for a subscriber whose stream already ended too: it reads the last
    /// items before the end). Returns whether it is ended (`close`).
    fn fell_behind(&self, id: SubscriberId, missed: u64) -> bool {
        let mut state = self.lock();
        let now = self.now();
        state.table.handle_full(now, id, missed);
        // The table knows every subscriber still held here (it forgets one
        // only at its unsubscribe, when its `Subscription` is dropped), so
        // it always decides; were it not to, the subscriber is ended.
        let mut closed = true;
        let mut dropped = Vec::new();
        while let Some(effect) = state.table.poll_effect() {
            match effect {
                ShareEffect::Skip { missed, .. } => {
                    closed = false;
                    self.skipped_total.fetch_add(missed, Ordering::Relaxed);
                }
                ShareEffect::Close { .. } => closed = true,
                ShareEffect::Reset { stream } => {
                    if let Some(s) = state.streams.remove(&stream) {
                        dropped.push(s);
                    }
                }
                // Nothing else follows a lag.
                ShareEffect::Start { .. }
                | ShareEffect::Deliver { .. }
                | ShareEffect::End { .. } => {}
            }
        }
        drop(state);
        drop(dropped);
        closed
    }

    fn item(&self, stream: StreamId, item: SharedItem) {
        let mut state = self.lock();
        let now = self.now();
        state.table.handle_item(now, stream);
        let mut dropped = Vec::new();
        self.run_effects(&mut state, Some(item), &mut dropped, |_| {
            (String::new(), None)
        });
        drop(state);
        drop(dropped);
    }

    fn end(&self, stream: StreamId, outcome: StreamEnd) {
        let mut state = self.lock();
        let now = self.now();
        state.table.handle_stream_end(now, stream, outcome);
        let mut dropped = Vec::new();
        self.run_effects(&mut state, None, &mut dropped, |_| (String::new(), None));
        // The stream ended by itself: its task is finishing; forget it.
        if let Some(s) = state.streams.remove(&stream) {
            dropped.push(s);
        }
        drop(state);
        drop(dropped);
    }

    /// Carries out the table's effects. `item` is the item being
    /// delivered; `start` gives the field name and the future of a stream
    /// to start. Streams to drop go to `dropped`, to be dropped after the
    /// lock is released.
    fn run_effects(
        &self,
        state: &mut HubState,
        mut item: Option<SharedItem>,
        dropped: &mut Vec<HubStream>,
        mut start: impl FnMut(StreamId) -> (String, Option<StreamFuture>),
    ) {
        while let Some(effect) = state.table.poll_effect() {
            match effect {
                ShareEffect::Start { stream, .. } => {
                    let (field, future) = start(stream);
                    let task = future.map(tasks::spawn);
                    state.streams.insert(
                        stream,
                        HubStream {
                            field,
                            ring: Ring::new(),
                            _task: task,
                        },
                    );
                }
                ShareEffect::Reset { stream } => {
                    if let Some(s) = state.streams.remove(&stream) {
                        // Its subscribers are gone; wake none.
                        dropped.push(s);
                    }
                }
                ShareEffect::Deliver { stream } => {
                    // Stored once; each subscriber reads it at its pace.
                    if let (Some(item), Some(s)) = (item.take(), state.streams.get(&stream)) {
                        s.ring.push(item, self.queue);
                    }
                }
                ShareEffect::End {
                    stream, outcome, ..
                } => {
                    // One per subscriber; the ring keeps the first.
                    if let Some(s) = state.streams.get(&stream) {
                        s.ring.end(outcome);
                    }
                }
                // Only `fell_behind` causes these.
                ShareEffect::Skip { .. } | ShareEffect::Close { .. } => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;
    use terminus_core::CallTimeouts;

    fn key(n: u64) -> ShareKey {
        ShareKey::new(
            "demo",
            "terminus.demo.v1.Demo/Ticks",
            &json!({ "everyMs": n }),
            &BTreeMap::new(),
            &CallTimeouts::default(),
        )
    }

    /// A stream whose items the test pushes through the report it hands
    /// back; it never ends by itself.
    fn manual(slot: Arc<Mutex<Option<StreamReport>>>) -> impl FnOnce(StreamReport) -> StreamFuture {
        move |report| {
            *slot.lock().unwrap() = Some(report);
            Box::pin(std::future::pending())
        }
    }

    #[test]
    fn a_lagging_subscriber_skips_the_oldest_and_catches_up() {
        smol::block_on(async {
            let hub = ShareHub::default();
            assert_eq!(hub.lag_policy(), LagPolicy::Skip);
            let hub = ShareHub::new(4, LagPolicy::Skip);
            let slot = Arc::new(Mutex::new(None));
            let mut fast = hub.subscribe(key(1), "f", manual(slot.clone()));
            let mut slow = hub.subscribe(key(1), "f", |_| unreachable!("joins the running stream"));
            let report = slot.lock().unwrap().take().unwrap();
            for n in 0..10 {
                report.item(json!({ "seq": n }));
                match fast.next().await {
                    Some(SharedEvent::Item(v)) => assert_eq!(v.value()["seq"], n),
                    other => panic!("{other:?}"),
                }
            }
            // The slow one skipped the 6 oldest and has the 4 newest.
            assert!(matches!(slow.next().await, Some(SharedEvent::Skipped(6))));
            for n in 6..10 {
                assert!(
                    matches!(slow.next().await, Some(SharedEvent::Item(v)) if v.value()["seq"] == n)
                );
            }
            assert_eq!(hub.skipped_total(), 6);
            assert_eq!(hub.rows()[0].skipped, 6);
            assert_eq!(hub.counts(), (1, 2));
            // Caught up, it gets every item again, without a skip.
            report.item(json!({ "seq": 10 }));
            assert!(
                matches!(slow.next().await, Some(SharedEvent::Item(v)) if v.value()["seq"] == 10)
            );
            assert!(
                matches!(fast.next().await, Some(SharedEvent::Item(v)) if v.value()["seq"] == 10)
            );
            // The end always fits, even in a full queue.
            for n in 11..20 {
                report.item(json!({ "seq": n }));
                assert!(
                    matches!(fast.next().await, Some(SharedEvent::Item(v)) if v.value()["seq"] == n)
                );
            }
            report.end(StreamEnd::Complete);
            assert!(matches!(slow.next().await, Some(SharedEvent::Skipped(5))));
            for n in 16..20 {
                assert!(
                    matches!(slow.next().await, Some(SharedEvent::Item(v)) if v.value()["seq"] == n)
                );
            }
            assert!(matches!(
                slow.next().await,
                Some(SharedEvent::End(StreamEnd::Complete))
            ));
            assert_eq!(hub.skipped_total(), 11);
            // A new hub of a reload keeps counting into the same total.
            let next = ShareHub::after(&hub, 4, LagPolicy::Skip);
            assert_eq!(next.skipped_total(), 11);
        });
    }

    #[test]
    fn a_slow_subscriber_is_ended_alone_and_the_last_leaving_resets() {
        smol::block_on(async {
            let hub = ShareHub::new(4, LagPolicy::Close);
            let slot = Arc::new(Mutex::new(None));
            let mut fast = hub.subscribe(key(1), "f", manual(slot.clone()));
            let mut slow = hub.subscribe(key(1), "f", |_| unreachable!("joins the running stream"));
            assert_eq!(hub.counts(), (1, 2));
            let report = slot.lock().unwrap().take().unwrap();
            for n in 0..10 {
                report.item(json!({ "seq": n }));
                // The fast one keeps up.
                match fast.next().await {
                    Some(SharedEvent::Item(v)) => assert_eq!(v.value()["seq"], n),
                    other => panic!("{other:?}"),
                }
            }
            // The slow one fell 6 items behind what is kept: it ends.
            assert!(slow.next().await.is_none());
            assert!(slow.next().await.is_none());
            assert_eq!(hub.skipped_total(), 0);
            assert_eq!(hub.counts(), (1, 1));
            drop(slow);
            assert_eq!(hub.counts(), (1, 1));
            report.end(StreamEnd::Complete);
            assert!(matches!(
                fast.next().await,
                Some(SharedEvent::End(StreamEnd::Complete))
            ));
            assert_eq!(hub.counts(), (0, 0));
            drop(fast);
            assert!(hub.rows().is_empty());
        });
    }

    #[test]
    fn dropping_the_last_subscription_drops_the_stream_task() {
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        smol::block_on(async {
            let hub = ShareHub::new(4, LagPolicy::Skip);
            let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = Flag(dropped.clone());
            let a = hub.subscribe(key(2), "f", move |_| {
                Box::pin(async move {
                    let _flag = flag;
                    std::future::pending::<()>().await
                })
            });
            let b = hub.subscribe(key(2), "f", |_| unreachable!());
            smol::Timer::after(std::time::Duration::from_millis(10)).await;
            drop(a);
            assert_eq!(hub.counts(), (1, 1));
            assert!(!dropped.load(std::sync::atomic::Ordering::SeqCst));
            drop(b);
            assert_eq!(hub.counts(), (0, 0));
            for _ in 0..100 {
                if dropped.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                smol::Timer::after(std::time::Duration::from_millis(5)).await;
            }
            assert!(
                dropped.load(std::sync::atomic::Ordering::SeqCst),
                "the stream's future is dropped"
            );
        });
    }
}
