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
//! - The hub never waits for a subscriber. Each subscriber has its own
//!   queue bounded by `limits.shared_subscriber_queue` items; an item that
//!   does not fit ends that one subscriber with a `SLOW_SUBSCRIBER` error
//!   (after the items already queued), and the stream goes on for the
//!   others. The stream's end always fits (the queue has one slot beyond
//!   the item bound).

use crate::tasks;
use async_channel::{Receiver, Sender};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use terminus_core::share::{
    ShareEffect, ShareKey, ShareTable, SharedItem, StreamEnd, StreamId, SubscriberId,
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
    /// Seconds since it started.
    pub age_seconds: f64,
}

struct HubStream {
    field: String,
    /// The stream's task: dropping it resets the upstream stream.
    _task: Option<smol::Task<()>>,
}

struct HubState {
    table: ShareTable,
    streams: HashMap<StreamId, HubStream>,
    queues: HashMap<SubscriberId, Sender<SharedEvent>>,
    next_subscriber: u64,
}

struct HubShared {
    state: Mutex<HubState>,
    queue: usize,
    epoch: Instant,
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
        ShareHub::new(DEFAULT_SUBSCRIBER_QUEUE)
    }
}

/// One subscriber's place on a shared stream. Dropping it unsubscribes.
pub struct Subscription {
    hub: Weak<HubShared>,
    id: SubscriberId,
    events: Receiver<SharedEvent>,
}

impl Subscription {
    /// The next event; `None` when the hub gave up on this subscriber (its
    /// queue overflowed: see [`slow_subscriber`]).
    pub async fn next(&self) -> Option<SharedEvent> {
        self.events.recv().await.ok()
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
            "this subscription could not keep up with its shared stream (more than {queue} events queued; limits.shared_subscriber_queue)"
        ),
    )
}

impl ShareHub {
    /// A hub whose subscribers may each have `queue` items waiting.
    pub fn new(queue: usize) -> Self {
        ShareHub {
            shared: Arc::new(HubShared {
                state: Mutex::new(HubState {
                    table: ShareTable::new(),
                    streams: HashMap::new(),
                    queues: HashMap::new(),
                    next_subscriber: 0,
                }),
                queue: queue.max(1),
                epoch: Instant::now(),
            }),
        }
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
        // `queue` items, plus the slot the stream's end always has.
        let (tx, rx) = async_channel::bounded(hub.queue + 1);
        let mut state = hub.lock();
        let id = SubscriberId(state.next_subscriber);
        state.next_subscriber += 1;
        let now = hub.now();
        state.queues.insert(id, tx);
        // Ids are fresh, so the table never refuses.
        let _ = state.table.handle_subscribe(now, id, key);
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
        drop(state);
        drop(dropped);
        Subscription {
            hub: Arc::downgrade(hub),
            id,
            events: rx,
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
                age_seconds: now.saturating_since(info.started_at).as_secs_f64(),
            })
            .collect()
    }

    /// The item bound of each subscriber's queue.
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
        state.queues.remove(&id);
        state.table.handle_unsubscribe(now, id);
        let mut dropped = Vec::new();
        self.run_effects(&mut state, None, &mut dropped, |_| (String::new(), None));
        drop(state);
        // Stream tasks are dropped (reset) outside the lock.
        drop(dropped);
    }

    fn item(&self, stream: StreamId, item: SharedItem) {
        let mut state = self.lock();
        let now = self.now();
        state.table.handle_item(now, stream);
        let mut dropped = Vec::new();
        self.run_effects(&mut state, Some(&item), &mut dropped, |_| {
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
        item: Option<&SharedItem>,
        dropped: &mut Vec<HubStream>,
        mut start: impl FnMut(StreamId) -> (String, Option<StreamFuture>),
    ) {
        let now = self.now();
        while let Some(effect) = state.table.poll_effect() {
            match effect {
                ShareEffect::Start { stream, .. } => {
                    let (field, future) = start(stream);
                    let task = future.map(tasks::spawn);
                    state
                        .streams
                        .insert(stream, HubStream { field, _task: task });
                }
                ShareEffect::Reset { stream } => {
                    if let Some(s) = state.streams.remove(&stream) {
                        dropped.push(s);
                    }
                }
                ShareEffect::Deliver { stream } => {
                    let Some(item) = item else { continue };
                    let mut slow = Vec::new();
                    for subscriber in state.table.subscribers(stream) {
                        let Some(queue) = state.queues.get(&subscriber) else {
                            continue;
                        };
                        if queue.len() >= self.queue
                            || queue.try_send(SharedEvent::Item(item.clone())).is_err()
                        {
                            slow.push(subscriber);
                        }
                    }
                    for subscriber in slow {
                        // Dropping its sender ends it after what is queued
                        // (`Subscription::next` gives `None`).
                        state.queues.remove(&subscriber);
                        state.table.handle_unsubscribe(now, subscriber);
                    }
                }
                ShareEffect::End {
                    subscriber,
                    outcome,
                    ..
                } => {
                    if let Some(queue) = state.queues.remove(&subscriber) {
                        let _ = queue.try_send(SharedEvent::End(outcome));
                    }
                }
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
    fn a_slow_subscriber_is_ended_alone_and_the_last_leaving_resets() {
        smol::block_on(async {
            let hub = ShareHub::new(4);
            let slot = Arc::new(Mutex::new(None));
            let fast = hub.subscribe(key(1), "f", manual(slot.clone()));
            let slow = hub.subscribe(key(1), "f", |_| unreachable!("joins the running stream"));
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
            // The slow one got its 4 queued items, then its end.
            for n in 0..4 {
                assert!(
                    matches!(slow.next().await, Some(SharedEvent::Item(v)) if v.value()["seq"] == n)
                );
            }
            assert!(slow.next().await.is_none());
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
            let hub = ShareHub::new(4);
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
