//! Shared subscriptions: the gateway-wide pure machine that lets live
//! operations on a `@shared` field share one upstream stream.
//!
//! The model is the one of the connection (quinn-proto, str0m): inputs go in
//! through `handle_*(now, ...)`, effects come out of [`ShareTable::poll_effect`];
//! nothing here does IO. The host (`runtime-smol/src/share.rs`) carries the
//! effects out:
//!
//! - [`ShareTable::handle_subscribe`]: a subscriber (one live operation's
//!   call) asks for the stream of a [`ShareKey`]; the first one makes
//!   [`ShareEffect::Start`], later ones join the running stream and get its
//!   items from then on.
//! - [`ShareTable::handle_unsubscribe`]: a subscriber ended (complete,
//!   socket closed, cancel, drain, or the host gave up on it); when it was
//!   the last one, [`ShareEffect::Reset`] at once: the host drops the
//!   upstream stream whether or not another item ever comes.
//! - [`ShareTable::handle_item`]: the upstream sent an item;
//!   [`ShareEffect::Deliver`] tells the host to hand it to
//!   [`ShareTable::subscribers`] of that stream.
//! - [`ShareTable::handle_stream_end`]: the upstream stream ended or failed;
//!   every subscriber gets [`ShareEffect::End`] with that same outcome and
//!   the stream is gone (no `Reset`: it already ended). Its subscribers
//!   stay known to the table as *ending* (they still read the items the
//!   stream sent before its end) until the host unsubscribes them.
//! - [`ShareTable::handle_full`]: a subscriber fell more than its bound of
//!   items behind the stream (the host keeps each stream's newest items,
//!   as many as that bound; older ones are gone for a subscriber that did
//!   not take them in time). The table's [`LagPolicy`] decides:
//!   [`ShareEffect::Skip`] (it goes on from the oldest item still kept, and
//!   is told how many it missed) or [`ShareEffect::Close`] (it is ended
//!   alone with `SLOW_SUBSCRIBER`; it leaves the stream, and when it was
//!   the last one the stream is reset). The stream never waits for a
//!   subscriber either way. An ending subscriber that falls behind gets
//!   the same decision; one that has left gets none.
//!
//! Every stream started ends exactly once (by `Reset` or by the upstream's
//! end), and never outlives its last subscriber; `core/src/ledger.rs`
//! ([`crate::ledger::ShareLedger`], feature `testkit`) checks it.

use crate::operation::EncodedPayload;
use crate::time::Millis;
use crate::upstream::{CallTimeouts, UpstreamCall, UpstreamFailure};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

/// One message of a shared stream, handed to every subscriber
/// (`CallEvent::Shared`). The first subscriber of each distinct selection
/// that shapes it records its serialised result here, and every other
/// subscriber with that selection reuses those bytes: a shared message is
/// encoded once per distinct selection, not once per subscriber. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct SharedItem(Arc<SharedItemInner>);

#[derive(Debug)]
struct SharedItemInner {
    value: Value,
    /// (selection signature, its serialised result). A few entries: one
    /// per distinct selection among the subscribers.
    encoded: Mutex<Vec<(Arc<str>, EncodedPayload)>>,
}

impl SharedItem {
    /// The message `value`, not yet encoded for anyone.
    pub fn new(value: Value) -> Self {
        SharedItem(Arc::new(SharedItemInner {
            value,
            encoded: Mutex::new(Vec::new()),
        }))
    }

    /// The upstream's message.
    pub fn value(&self) -> &Value {
        &self.0.value
    }

    /// The result already encoded for selection `shape`, if any.
    pub(crate) fn encoded(&self, shape: &str) -> Option<EncodedPayload> {
        let encoded = self.0.encoded.lock().unwrap_or_else(|e| e.into_inner());
        encoded
            .iter()
            .find(|(s, _)| &**s == shape)
            .map(|(_, p)| p.clone())
    }

    /// Records the result encoded for selection `shape`.
    pub(crate) fn remember(&self, shape: Arc<str>, payload: EncodedPayload) {
        let mut encoded = self.0.encoded.lock().unwrap_or_else(|e| e.into_inner());
        if !encoded.iter().any(|(s, _)| *s == shape) {
            encoded.push((shape, payload));
        }
    }

    /// How many distinct selections have encoded this message so far.
    pub fn encodings(&self) -> usize {
        self.0.encoded.lock().map(|e| e.len()).unwrap_or(0)
    }
}

impl PartialEq for SharedItem {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.value == other.0.value
    }
}

/// What makes two upstream calls the same stream: two live operations share
/// one upstream stream iff their keys are equal. The key is the upstream's
/// name, the method, the canonical request message (the coerced arguments,
/// keys sorted), the metadata the call forwards (the [`crate::RequestContext`]
/// entries the upstream's configuration sends, so two callers with a
/// different forwarded identity never share), and the call's timeouts.
/// docs/schema.md ("`@shared`") states the same rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareKey(Arc<str>);

impl ShareKey {
    /// The key of a call to `method` on `upstream` with `request`, sending
    /// the metadata entries `forwarded` (context key to value), bounded by
    /// `timeouts`.
    pub fn new(
        upstream: &str,
        method: &str,
        request: &Value,
        forwarded: &BTreeMap<String, String>,
        timeouts: &CallTimeouts,
    ) -> Self {
        let canonical = serde_json::json!({
            "upstream": upstream,
            "method": method,
            "request": canonical_json(request),
            "metadata": forwarded,
            "timeouts": [
                timeouts.call.map(|d| d.as_millis() as u64),
                timeouts.stream.map(|d| d.as_millis() as u64),
                timeouts.idle.map(|d| d.as_millis() as u64),
            ],
        });
        ShareKey(Arc::from(canonical.to_string()))
    }

    /// The key of a `@shared` gRPC `call`, forwarding the context entries
    /// for which `forwards(context key)` holds (the upstream's metadata
    /// configuration); `None` for a call that is not shared.
    pub fn of_call(call: &UpstreamCall, forwards: impl Fn(&str) -> bool) -> Option<ShareKey> {
        match call {
            UpstreamCall::Grpc {
                upstream,
                method,
                request,
                timeouts,
                context,
                shared: true,
                streaming: true,
            } => {
                let forwarded: BTreeMap<String, String> = context
                    .iter()
                    .filter(|(k, _)| forwards(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Some(ShareKey::new(
                    upstream, method, request, &forwarded, timeouts,
                ))
            }
            _ => None,
        }
    }

    /// The canonical text of the key (JSON).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `value` with every object's keys sorted, so that the same arguments in
/// another order make the same key.
fn canonical_json(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, canonical_json(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical_json).collect()),
        other => other.clone(),
    }
}

/// What happens to a subscriber of a shared stream whose queue is full
/// when the next item comes (`limits.shared_lag`, docs/config.md): the
/// stream never waits for it; this decides whether it loses items or its
/// subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum LagPolicy {
    /// `"skip"` (the default): the subscriber's oldest queued item is
    /// dropped and the new one queued, so what it receives next is never
    /// older than its queue and it catches up with the live stream; the
    /// next result it gets says how many it skipped. The oldest, not the
    /// newest: a clock's or a room's subscriber wants the latest events,
    /// and dropping the newest would keep it a full queue behind for good.
    #[default]
    Skip,
    /// `"close"`: the subscriber is ended alone with `SLOW_SUBSCRIBER`
    /// after the items it has queued; the stream goes on for the others.
    Close,
}

impl LagPolicy {
    /// Every policy, by its configuration name.
    pub const ALL: [LagPolicy; 2] = [LagPolicy::Skip, LagPolicy::Close];

    /// The configuration name (`"skip"`, `"close"`).
    pub fn name(self) -> &'static str {
        match self {
            LagPolicy::Skip => "skip",
            LagPolicy::Close => "close",
        }
    }

    /// The policy named `name`, if any.
    pub fn from_name(name: &str) -> Option<LagPolicy> {
        LagPolicy::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for LagPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One upstream stream of the table. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shared#{}", self.0)
    }
}

/// One subscriber, named by the host (unique among live subscribers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriberId(pub u64);

/// How a shared upstream stream ended by itself.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEnd {
    /// The upstream completed the stream.
    Complete,
    /// The upstream stream failed.
    Failed(UpstreamFailure),
}

/// One input of the table, for hosts that keep a log of them (the
/// simulator, the fuzz target, [`crate::ledger::AuditedShare`]): the
/// `handle_*` methods as data.
#[derive(Debug, Clone, PartialEq)]
pub enum ShareInput {
    /// [`ShareTable::handle_subscribe`].
    Subscribe {
        /// The subscriber.
        subscriber: SubscriberId,
        /// Its key.
        key: ShareKey,
    },
    /// [`ShareTable::handle_unsubscribe`].
    Unsubscribe {
        /// The subscriber.
        subscriber: SubscriberId,
    },
    /// [`ShareTable::handle_item`].
    Item {
        /// The stream.
        stream: StreamId,
    },
    /// [`ShareTable::handle_stream_end`].
    StreamEnd {
        /// The stream.
        stream: StreamId,
        /// How it ended.
        outcome: StreamEnd,
    },
    /// [`ShareTable::handle_full`].
    Full {
        /// The subscriber that fell behind.
        subscriber: SubscriberId,
        /// The items it missed.
        missed: u64,
    },
}

/// What the host does for the table.
#[derive(Debug, Clone, PartialEq)]
pub enum ShareEffect {
    /// Open the upstream stream for `key`; report its items and end with
    /// `stream`.
    Start {
        /// The new stream.
        stream: StreamId,
        /// What to call.
        key: ShareKey,
    },
    /// Drop the upstream stream at once (its last subscriber left).
    Reset {
        /// The stream.
        stream: StreamId,
    },
    /// Hand the item just reported to every one of
    /// [`ShareTable::subscribers`] of `stream`.
    Deliver {
        /// The stream.
        stream: StreamId,
    },
    /// [`LagPolicy::Skip`]: `subscriber` fell behind; it goes on from the
    /// oldest item still kept, and its next result says it missed `missed`.
    Skip {
        /// The subscriber.
        subscriber: SubscriberId,
        /// Its stream.
        stream: StreamId,
        /// The items it missed.
        missed: u64,
    },
    /// [`LagPolicy::Close`]: `subscriber` fell behind; it has left the
    /// stream: end its operation with `SLOW_SUBSCRIBER`. A `Reset` follows
    /// when it was the last subscriber.
    Close {
        /// The subscriber.
        subscriber: SubscriberId,
        /// The stream it was on.
        stream: StreamId,
    },
    /// End `subscriber`'s operation with `outcome`: its stream ended.
    End {
        /// The subscriber.
        subscriber: SubscriberId,
        /// The stream it was on.
        stream: StreamId,
        /// The stream's outcome.
        outcome: StreamEnd,
    },
}

/// A bad input, a bug of the host: the table is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareError {
    /// This subscriber is already on a stream.
    AlreadySubscribed(SubscriberId),
}

impl fmt::Display for ShareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShareError::AlreadySubscribed(s) => {
                write!(f, "subscriber {} is already on a stream", s.0)
            }
        }
    }
}

impl std::error::Error for ShareError {}

#[derive(Debug)]
struct Stream {
    key: ShareKey,
    subscribers: BTreeSet<SubscriberId>,
    started_at: Millis,
    items: u64,
    skipped: u64,
}

/// A shared stream as the admin page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    /// The stream.
    pub stream: StreamId,
    /// Its key.
    pub key: ShareKey,
    /// Live subscribers.
    pub subscribers: usize,
    /// When it started.
    pub started_at: Millis,
    /// Items delivered so far.
    pub items: u64,
    /// Items skipped by lagging subscribers so far ([`LagPolicy::Skip`]),
    /// one per subscriber per item.
    pub skipped: u64,
}

/// The sharing table; see the module documentation.
#[derive(Debug, Default)]
pub struct ShareTable {
    by_key: HashMap<ShareKey, StreamId>,
    streams: BTreeMap<StreamId, Stream>,
    subscribers: HashMap<SubscriberId, StreamId>,
    /// Subscribers whose stream ended ([`ShareEffect::End`]) and that the
    /// host has not unsubscribed yet: they still read the stream's last
    /// items, and may fall behind while they do.
    ending: HashMap<SubscriberId, StreamId>,
    effects: VecDeque<ShareEffect>,
    next_stream: u64,
    policy: LagPolicy,
}

impl ShareTable {
    /// An empty table with the default [`LagPolicy`] (`Skip`).
    pub fn new() -> Self {
        ShareTable::default()
    }

    /// An empty table whose lagging subscribers follow `policy`.
    pub fn with_policy(policy: LagPolicy) -> Self {
        ShareTable {
            policy,
            ..ShareTable::default()
        }
    }

    /// What happens to a lagging subscriber.
    pub fn policy(&self) -> LagPolicy {
        self.policy
    }

    /// `subscriber` wants the stream of `key`: joins the running one, or
    /// starts one ([`ShareEffect::Start`]). Returns the stream.
    pub fn handle_subscribe(
        &mut self,
        now: Millis,
        subscriber: SubscriberId,
        key: ShareKey,
    ) -> Result<StreamId, ShareError> {
        if self.subscribers.contains_key(&subscriber) {
            return Err(ShareError::AlreadySubscribed(subscriber));
        }
        let stream = match self.by_key.get(&key) {
            Some(stream) => *stream,
            None => {
                let stream = StreamId(self.next_stream);
                self.next_stream += 1;
                self.by_key.insert(key.clone(), stream);
                self.streams.insert(
                    stream,
                    Stream {
                        key: key.clone(),
                        subscribers: BTreeSet::new(),
                        started_at: now,
                        items: 0,
                        skipped: 0,
                    },
                );
                self.effects.push_back(ShareEffect::Start { stream, key });
                stream
            }
        };
        if let Some(s) = self.streams.get_mut(&stream) {
            s.subscribers.insert(subscriber);
        }
        self.subscribers.insert(subscriber, stream);
        Ok(stream)
    }

    /// `subscriber` ended. When it was its stream's last subscriber, the
    /// stream is removed and [`ShareEffect::Reset`] follows at once. A
    /// subscriber whose stream already ended is forgotten (nothing to
    /// reset); an unknown one is ignored.
    pub fn handle_unsubscribe(&mut self, _now: Millis, subscriber: SubscriberId) {
        let Some(stream) = self.subscribers.remove(&subscriber) else {
            self.ending.remove(&subscriber);
            return;
        };
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        s.subscribers.remove(&subscriber);
        if s.subscribers.is_empty() {
            if let Some(s) = self.streams.remove(&stream) {
                self.by_key.remove(&s.key);
            }
            self.effects.push_back(ShareEffect::Reset { stream });
        }
    }

    /// The upstream sent an item on `stream`: [`ShareEffect::Deliver`].
    /// Returns whether the stream is live (a late item of a stream already
    /// ended or reset is ignored).
    pub fn handle_item(&mut self, _now: Millis, stream: StreamId) -> bool {
        match self.streams.get_mut(&stream) {
            Some(s) => {
                s.items += 1;
                self.effects.push_back(ShareEffect::Deliver { stream });
                true
            }
            None => false,
        }
    }

    /// The upstream stream ended with `outcome`: every subscriber ends with
    /// it ([`ShareEffect::End`]) and the stream is removed; its subscribers
    /// are *ending* until the host unsubscribes them. A late end of a
    /// stream already reset is ignored.
    pub fn handle_stream_end(&mut self, _now: Millis, stream: StreamId, outcome: StreamEnd) {
        let Some(s) = self.streams.remove(&stream) else {
            return;
        };
        self.by_key.remove(&s.key);
        for subscriber in s.subscribers {
            self.subscribers.remove(&subscriber);
            self.ending.insert(subscriber, stream);
            self.effects.push_back(ShareEffect::End {
                subscriber,
                stream,
                outcome: outcome.clone(),
            });
        }
    }

    /// `subscriber` fell behind its stream by more than the host keeps and
    /// missed `missed` items: the [`LagPolicy`] decides, with
    /// [`ShareEffect::Skip`] or [`ShareEffect::Close`] (then
    /// [`ShareEffect::Reset`] when it was the last subscriber). A
    /// subscriber whose stream ended (it still reads the stream's last
    /// items) gets the same decision; an unknown one (it has left) is
    /// ignored.
    pub fn handle_full(&mut self, now: Millis, subscriber: SubscriberId, missed: u64) {
        let Some(stream) = self
            .subscribers
            .get(&subscriber)
            .or_else(|| self.ending.get(&subscriber))
            .copied()
        else {
            return;
        };
        match self.policy {
            LagPolicy::Skip => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.skipped += missed;
                }
                self.effects.push_back(ShareEffect::Skip {
                    subscriber,
                    stream,
                    missed,
                });
            }
            LagPolicy::Close => {
                self.effects
                    .push_back(ShareEffect::Close { subscriber, stream });
                // It leaves: a live subscriber as with an unsubscribe (a
                // `Reset` when it was the last one), an ending one is
                // forgotten.
                self.handle_unsubscribe(now, subscriber);
            }
        }
    }

    /// Feeds one [`ShareInput`]; a subscribe that the table refuses
    /// ([`ShareError`]) changes nothing.
    pub fn handle(&mut self, now: Millis, input: ShareInput) -> Result<(), ShareError> {
        match input {
            ShareInput::Subscribe { subscriber, key } => {
                self.handle_subscribe(now, subscriber, key)?;
            }
            ShareInput::Unsubscribe { subscriber } => self.handle_unsubscribe(now, subscriber),
            ShareInput::Item { stream } => {
                self.handle_item(now, stream);
            }
            ShareInput::StreamEnd { stream, outcome } => {
                self.handle_stream_end(now, stream, outcome)
            }
            ShareInput::Full { subscriber, missed } => self.handle_full(now, subscriber, missed),
        }
        Ok(())
    }

    /// The next effect, if any. Drain after every input.
    pub fn poll_effect(&mut self) -> Option<ShareEffect> {
        self.effects.pop_front()
    }

    /// The live subscribers of `stream`, in id order.
    pub fn subscribers(&self, stream: StreamId) -> impl Iterator<Item = SubscriberId> + '_ {
        self.streams
            .get(&stream)
            .into_iter()
            .flat_map(|s| s.subscribers.iter().copied())
    }

    /// The stream `subscriber` is on, if it is live.
    pub fn stream_of(&self, subscriber: SubscriberId) -> Option<StreamId> {
        self.subscribers.get(&subscriber).copied()
    }

    /// Live streams.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Live subscribers, over all streams.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// Subscribers whose stream ended and that the host has not
    /// unsubscribed yet, in id order.
    pub fn ending(&self) -> Vec<SubscriberId> {
        let mut ending: Vec<SubscriberId> = self.ending.keys().copied().collect();
        ending.sort();
        ending
    }

    /// The live streams, for the admin page.
    pub fn streams(&self) -> Vec<StreamInfo> {
        self.streams
            .iter()
            .map(|(id, s)| StreamInfo {
                stream: *id,
                key: s.key.clone(),
                subscribers: s.subscribers.len(),
                started_at: s.started_at,
                items: s.items,
                skipped: s.skipped,
            })
            .collect()
    }

    /// Whether nothing is live, no subscriber is ending and no effect is
    /// pending.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
            && self.subscribers.is_empty()
            && self.ending.is_empty()
            && self.effects.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::AuditedShare;
    use crate::upstream::FailureKind;
    use serde_json::json;

    fn key(every: u64) -> ShareKey {
        ShareKey::new(
            "demo",
            "terminus.demo.v1.Demo/Ticks",
            &json!({ "everyMs": every }),
            &BTreeMap::new(),
            &CallTimeouts::default(),
        )
    }

    fn sub(table: &mut AuditedShare, now: u64, id: u64, every: u64) -> Vec<ShareEffect> {
        table.handle(
            Millis(now),
            ShareInput::Subscribe {
                subscriber: SubscriberId(id),
                key: key(every),
            },
        )
    }

    fn unsub(table: &mut AuditedShare, now: u64, id: u64) -> Vec<ShareEffect> {
        table.handle(
            Millis(now),
            ShareInput::Unsubscribe {
                subscriber: SubscriberId(id),
            },
        )
    }

    #[test]
    fn the_key_ignores_argument_order_and_separates_metadata_and_timeouts() {
        let a = ShareKey::new(
            "u",
            "p.S/M",
            &json!({"a": 1, "b": {"x": 1, "y": 2}}),
            &BTreeMap::new(),
            &CallTimeouts::default(),
        );
        let b = ShareKey::new(
            "u",
            "p.S/M",
            &json!({"b": {"y": 2, "x": 1}, "a": 1}),
            &BTreeMap::new(),
            &CallTimeouts::default(),
        );
        assert_eq!(a, b);
        let alice = BTreeMap::from([("claim:sub".to_string(), "alice".to_string())]);
        let bob = BTreeMap::from([("claim:sub".to_string(), "bob".to_string())]);
        let with = |m: &BTreeMap<String, String>| {
            ShareKey::new("u", "p.S/M", &json!({"a": 1}), m, &CallTimeouts::default())
        };
        assert_ne!(with(&alice), with(&bob));
        assert_eq!(with(&alice), with(&alice.clone()));
        let idle = CallTimeouts {
            idle: Some(std::time::Duration::from_secs(5)),
            ..Default::default()
        };
        assert_ne!(
            ShareKey::new("u", "p.S/M", &json!({"a": 1}), &BTreeMap::new(), &idle),
            ShareKey::new(
                "u",
                "p.S/M",
                &json!({"a": 1}),
                &BTreeMap::new(),
                &CallTimeouts::default()
            )
        );
        assert_ne!(key(1), key(2));
        assert_ne!(
            ShareKey::new(
                "u",
                "p.S/M",
                &json!({}),
                &BTreeMap::new(),
                &CallTimeouts::default()
            ),
            ShareKey::new(
                "v",
                "p.S/M",
                &json!({}),
                &BTreeMap::new(),
                &CallTimeouts::default()
            )
        );
    }

    #[test]
    fn of_call_forwards_only_the_configured_context_entries() {
        let context = std::sync::Arc::new(BTreeMap::from([
            ("claim:sub".to_string(), "alice".to_string()),
            ("header:user-agent".to_string(), "curl".to_string()),
        ]));
        let call = |shared: bool, context: crate::RequestContext| UpstreamCall::Grpc {
            upstream: "u".into(),
            method: "p.S/M".into(),
            request: json!({"a": 1}),
            streaming: true,
            timeouts: CallTimeouts::default(),
            context,
            shared,
        };
        assert_eq!(
            ShareKey::of_call(&call(false, context.clone()), |_| true),
            None
        );
        let other_agent = std::sync::Arc::new(BTreeMap::from([
            ("claim:sub".to_string(), "alice".to_string()),
            ("header:user-agent".to_string(), "wget".to_string()),
        ]));
        let claim_only = |k: &str| k == "claim:sub";
        assert_eq!(
            ShareKey::of_call(&call(true, context.clone()), claim_only),
            ShareKey::of_call(&call(true, other_agent.clone()), claim_only)
        );
        assert_ne!(
            ShareKey::of_call(&call(true, context), |_| true),
            ShareKey::of_call(&call(true, other_agent), |_| true)
        );
    }

    #[test]
    fn joiners_share_one_stream_and_the_last_leaving_resets_it_at_once() {
        let mut t = AuditedShare::new();
        let start = sub(&mut t, 0, 1, 20);
        assert!(matches!(
            &start[..],
            [ShareEffect::Start {
                stream: StreamId(0),
                ..
            }]
        ));
        assert_eq!(sub(&mut t, 1, 2, 20), vec![]);
        assert!(matches!(
            &sub(&mut t, 1, 3, 50)[..],
            [ShareEffect::Start {
                stream: StreamId(1),
                ..
            }]
        ));
        assert_eq!(t.table().stream_count(), 2);
        assert_eq!(
            t.handle(
                Millis(2),
                ShareInput::Item {
                    stream: StreamId(0)
                }
            ),
            vec![ShareEffect::Deliver {
                stream: StreamId(0)
            }]
        );
        assert_eq!(
            t.table().subscribers(StreamId(0)).collect::<Vec<_>>(),
            vec![SubscriberId(1), SubscriberId(2)]
        );
        assert_eq!(unsub(&mut t, 3, 1), vec![]);
        assert_eq!(
            unsub(&mut t, 4, 2),
            vec![ShareEffect::Reset {
                stream: StreamId(0)
            }]
        );
        // A late item of the reset stream goes nowhere.
        assert_eq!(
            t.handle(
                Millis(5),
                ShareInput::Item {
                    stream: StreamId(0)
                }
            ),
            vec![]
        );
        // The same key again starts a new stream.
        assert!(matches!(
            &sub(&mut t, 6, 4, 20)[..],
            [ShareEffect::Start {
                stream: StreamId(2),
                ..
            }]
        ));
        assert_eq!(
            unsub(&mut t, 7, 4),
            vec![ShareEffect::Reset {
                stream: StreamId(2)
            }]
        );
        assert_eq!(
            unsub(&mut t, 7, 3),
            vec![ShareEffect::Reset {
                stream: StreamId(1)
            }]
        );
        assert!(t.check_end().is_empty());
        assert!(t.table().is_empty());
        assert_eq!(t.ledger().live_streams(), 0);
    }

    #[test]
    fn an_upstream_end_or_failure_ends_every_subscriber_with_it() {
        let mut t = AuditedShare::new();
        for id in 0..3 {
            sub(&mut t, 0, id, 20);
        }
        let failure = UpstreamFailure::new(FailureKind::Failed, "tick 3 failed");
        let ends = t.handle(
            Millis(1),
            ShareInput::StreamEnd {
                stream: StreamId(0),
                outcome: StreamEnd::Failed(failure.clone()),
            },
        );
        assert_eq!(ends.len(), 3);
        assert!(ends.iter().all(
            |e| matches!(e, ShareEffect::End { outcome: StreamEnd::Failed(f), .. } if *f == failure)
        ));
        // Their later unsubscribes (the host drops them after their last
        // items), and a late end, are no-ops: no Reset.
        for id in 0..3 {
            assert_eq!(unsub(&mut t, 2, id), vec![]);
        }
        assert_eq!(
            t.handle(
                Millis(2),
                ShareInput::StreamEnd {
                    stream: StreamId(0),
                    outcome: StreamEnd::Complete
                }
            ),
            vec![]
        );
        assert!(t.table().is_empty());
        assert!(t.check_end().is_empty());
    }

    #[test]
    fn a_second_subscribe_of_a_live_subscriber_is_refused() {
        let mut table = ShareTable::new();
        table
            .handle_subscribe(Millis(0), SubscriberId(1), key(1))
            .unwrap();
        assert_eq!(
            table.handle_subscribe(Millis(0), SubscriberId(1), key(2)),
            Err(ShareError::AlreadySubscribed(SubscriberId(1)))
        );
        assert_eq!(table.stream_count(), 1);
    }

    #[test]
    fn the_ledger_catches_a_stream_that_outlives_its_last_subscriber() {
        use crate::ledger::{ShareLedger, ShareViolation, Violation};
        let mut ledger = ShareLedger::new();
        let input = ShareInput::Subscribe {
            subscriber: SubscriberId(1),
            key: key(1),
        };
        ledger.observe_input(&input, true);
        ledger.observe_effect(&ShareEffect::Start {
            stream: StreamId(0),
            key: key(1),
        });
        ledger.observe_input(
            &ShareInput::Unsubscribe {
                subscriber: SubscriberId(1),
            },
            true,
        );
        // No Reset in this step.
        ledger.check_end();
        assert!(ledger.violations().contains(&Violation::Share(
            ShareViolation::OutlivedLastSubscriber {
                stream: StreamId(0)
            }
        )));
        assert!(ledger
            .violations()
            .contains(&Violation::Share(ShareViolation::NeverEnded {
                stream: StreamId(0)
            })));
    }

    #[test]
    fn seeded_runs_break_no_rule_and_leave_nothing_alive() {
        let (mut skipped, mut closed) = (0, 0);
        for seed in 0..200 {
            let report = crate::sim::run_shared(seed, 400, 1 + (seed as usize % 5));
            assert!(
                report.violations.is_empty(),
                "seed {seed}: {:?}",
                report.violations
            );
            assert_eq!(report.left_alive, (0, 0), "seed {seed}");
            assert!(report.streams_started > 0, "seed {seed}");
            skipped += report.skipped;
            closed += report.closed_slow;
        }
        assert!(
            skipped > 0 && closed > 0,
            "{skipped} skips, {closed} closes"
        );
    }

    fn full(table: &mut AuditedShare, now: u64, id: u64) -> Vec<ShareEffect> {
        table.handle(
            Millis(now),
            ShareInput::Full {
                subscriber: SubscriberId(id),
                missed: 2,
            },
        )
    }

    #[test]
    fn a_lagging_subscriber_skips_by_default_and_stays() {
        let mut t = AuditedShare::new();
        assert_eq!(t.table().policy(), LagPolicy::Skip);
        sub(&mut t, 0, 1, 20);
        sub(&mut t, 0, 2, 20);
        for n in 0..3 {
            assert_eq!(
                full(&mut t, 1 + n, 1),
                vec![ShareEffect::Skip {
                    subscriber: SubscriberId(1),
                    stream: StreamId(0),
                    missed: 2
                }]
            );
        }
        assert_eq!(t.table().stream_of(SubscriberId(1)), Some(StreamId(0)));
        assert_eq!(t.table().streams()[0].skipped, 6);
        assert_eq!(t.table().streams()[0].subscribers, 2);
        // A subscriber already gone decides nothing.
        assert_eq!(full(&mut t, 5, 9), vec![]);
        assert!(t.finish(Millis(6)).is_empty());
    }

    #[test]
    fn a_lagging_subscriber_under_close_is_ended_alone() {
        let mut t = AuditedShare::with_policy(LagPolicy::Close);
        sub(&mut t, 0, 1, 20);
        sub(&mut t, 0, 2, 20);
        assert_eq!(
            full(&mut t, 1, 1),
            vec![ShareEffect::Close {
                subscriber: SubscriberId(1),
                stream: StreamId(0)
            }]
        );
        assert_eq!(t.table().stream_of(SubscriberId(1)), None);
        // Its own later unsubscribe (the operation ends) is a no-op.
        assert_eq!(unsub(&mut t, 2, 1), vec![]);
        // The last subscriber closed for lagging resets the stream at once.
        assert_eq!(
            full(&mut t, 3, 2),
            vec![
                ShareEffect::Close {
                    subscriber: SubscriberId(2),
                    stream: StreamId(0)
                },
                ShareEffect::Reset {
                    stream: StreamId(0)
                }
            ]
        );
        assert!(t.table().is_empty());
        assert!(t.check_end().is_empty());
    }

    #[test]
    fn a_subscriber_whose_stream_ended_is_decided_for_until_it_leaves() {
        for policy in LagPolicy::ALL {
            let mut t = AuditedShare::with_policy(policy);
            sub(&mut t, 0, 1, 20);
            sub(&mut t, 0, 2, 20);
            let ended = t.handle(
                Millis(1),
                ShareInput::StreamEnd {
                    stream: StreamId(0),
                    outcome: StreamEnd::Complete,
                },
            );
            assert_eq!(ended.len(), 2, "{policy:?}: {ended:?}");
            assert_eq!(t.table().ending(), vec![SubscriberId(1), SubscriberId(2)]);
            assert!(!t.table().is_empty());
            // Reading the stream's last items, subscriber 1 falls behind:
            // the policy decides, as for a live subscriber; no `Reset`
            // follows (the stream already ended).
            let decided = full(&mut t, 2, 1);
            let expected = match policy {
                LagPolicy::Skip => ShareEffect::Skip {
                    subscriber: SubscriberId(1),
                    stream: StreamId(0),
                    missed: 2,
                },
                LagPolicy::Close => ShareEffect::Close {
                    subscriber: SubscriberId(1),
                    stream: StreamId(0),
                },
            };
            assert_eq!(decided, vec![expected], "{policy:?}");
            // Both leave (the host drops their subscriptions): nothing is
            // decided for them any more, and nothing is left.
            assert_eq!(unsub(&mut t, 3, 1), vec![]);
            assert_eq!(unsub(&mut t, 3, 2), vec![]);
            assert_eq!(full(&mut t, 4, 1), vec![], "{policy:?}");
            assert_eq!(full(&mut t, 4, 2), vec![], "{policy:?}");
            assert!(t.table().is_empty(), "{policy:?}");
            assert!(t.check_end().is_empty(), "{policy:?}");
        }
    }

    #[test]
    fn the_lag_policies_have_their_configuration_names() {
        for policy in LagPolicy::ALL {
            assert_eq!(LagPolicy::from_name(policy.name()), Some(policy));
        }
        assert_eq!(LagPolicy::from_name("drop"), None);
        assert_eq!(LagPolicy::default().name(), "skip");
    }

    #[test]
    fn a_skip_is_told_in_the_next_result_only_reusing_the_shared_bytes() {
        use crate::graphql::{CallEvent, Execution, Limits, Schema};
        use crate::{OperationRequest, UpstreamEvent};
        let schema = Schema::parse(crate::graphql::demo::SCHEMA_SDL, "demo.graphql").unwrap();
        let request = OperationRequest {
            id: "x".into(),
            query: "subscription { ticks(everyMs: 5) { seq } }".into(),
            operation_name: None,
            variables: Default::default(),
            extensions: Default::default(),
        };
        let mut exec = Execution::start(&schema, &request, &Limits::default());
        let (call, _) = exec.poll_call().expect("a call");
        let next = |exec: &mut Execution, seq: u64| {
            let item = SharedItem::new(json!({ "seq": seq }));
            exec.handle_call_event(call, CallEvent::Shared(item));
            match exec.poll_output() {
                Some(UpstreamEvent::NextEncoded(p)) => p.as_str().to_owned(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(next(&mut exec, 1), r#"{"data":{"ticks":{"seq":1}}}"#);
        exec.handle_call_event(call, CallEvent::Skipped(2));
        exec.handle_call_event(call, CallEvent::Skipped(1));
        assert_eq!(exec.poll_output(), None, "a skip alone is no result");
        assert_eq!(
            next(&mut exec, 5),
            r#"{"data":{"ticks":{"seq":5}},"extensions":{"skipped":3}}"#
        );
        assert_eq!(next(&mut exec, 6), r#"{"data":{"ticks":{"seq":6}}}"#);
        // The spliced text is the JSON the value would give.
        let spliced =
            crate::operation::EncodedPayload::encode(&json!({"data": {"a": "}"}})).with_skipped(4);
        assert_eq!(
            serde_json::from_str::<Value>(spliced.as_str()).unwrap(),
            json!({"data": {"a": "}"}, "extensions": {"skipped": 4}})
        );
        let empty = crate::operation::EncodedPayload::encode(&json!({})).with_skipped(1);
        assert_eq!(empty.as_str(), r#"{"extensions":{"skipped":1}}"#);
    }

    #[test]
    fn a_shared_message_is_encoded_once_per_distinct_selection() {
        use crate::graphql::{CallEvent, Execution, Limits, Schema};
        use crate::server::{ConnectionConfig, Effect, Input, ServerConnection, Subprotocol};
        use crate::{OperationRequest, UpstreamEvent};
        let schema = Schema::parse(crate::graphql::demo::SCHEMA_SDL, "demo.graphql").unwrap();
        let run = |query: &str| {
            let request = OperationRequest {
                id: "x".into(),
                query: query.into(),
                operation_name: None,
                variables: Default::default(),
                extensions: Default::default(),
            };
            let mut exec = Execution::start(&schema, &request, &Limits::default());
            let (call, _) = exec.poll_call().expect("a call");
            (exec, call)
        };
        let item = SharedItem::new(json!({"seq": 7}));
        let mut outputs = Vec::new();
        for query in [
            "subscription { ticks(everyMs: 5) { seq } }",
            "subscription   {  ticks(everyMs: 5) { seq } }",
            "subscription { t: ticks(everyMs: 5) { seq __typename } }",
        ] {
            let (mut exec, call) = run(query);
            exec.handle_call_event(call, CallEvent::Shared(item.clone()));
            outputs.push(exec.poll_output().expect("a result"));
        }
        let [UpstreamEvent::NextEncoded(a), UpstreamEvent::NextEncoded(b), UpstreamEvent::NextEncoded(c)] =
            &outputs[..]
        else {
            panic!("{outputs:?}");
        };
        assert!(a.same_bytes(b), "the same selection reuses the bytes");
        assert!(!a.same_bytes(c));
        assert_eq!(a.as_str(), r#"{"data":{"ticks":{"seq":7}}}"#);
        assert_eq!(
            c.as_str(),
            r#"{"data":{"t":{"seq":7,"__typename":"Tick"}}}"#
        );
        assert_eq!(item.encodings(), 2);

        // The connection writes the shared bytes around each id, for both
        // subprotocols, exactly as it would encode the value itself.
        for protocol in [Subprotocol::GraphqlTransportWs, Subprotocol::GraphqlWs] {
            let frames: Vec<String> = [UpstreamEvent::NextEncoded(a.clone()), UpstreamEvent::Next(serde_json::from_str(a.as_str()).unwrap())]
                .into_iter()
                .map(|event| {
                    let mut conn = ServerConnection::new(Millis(0), protocol, ConnectionConfig::default());
                    let init = r#"{"type":"connection_init"}"#;
                    conn.handle(Millis(0), Input::Text(init.into()));
                    conn.handle(Millis(0), Input::Auth(crate::server::AuthVerdict::Accept { ack_payload: None }));
                    let start = match protocol {
                        Subprotocol::GraphqlTransportWs => r#"{"type":"subscribe","id":"q\"1","payload":{"query":"subscription { ticks(everyMs: 5) { seq } }"}}"#,
                        Subprotocol::GraphqlWs => r#"{"type":"start","id":"q\"1","payload":{"query":"subscription { ticks(everyMs: 5) { seq } }"}}"#,
                    };
                    conn.handle(Millis(0), Input::Text(start.into()));
                    let mut op = None;
                    while let Some(effect) = conn.poll_effect() {
                        if let Effect::Start { op: o, .. } = effect {
                            op = Some(o);
                        }
                    }
                    conn.handle(Millis(1), Input::Upstream { op: op.expect("started"), event });
                    let mut frame = None;
                    while let Some(effect) = conn.poll_effect() {
                        if let Effect::SendText(text) = effect {
                            frame = Some(text);
                        }
                    }
                    frame.expect("a frame")
                })
                .collect();
            assert_eq!(frames[0], frames[1]);
            assert!(frames[0].contains(r#""id":"q\"1""#), "{}", frames[0]);
        }
    }
}
