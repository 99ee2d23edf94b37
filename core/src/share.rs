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
//!   the stream is gone (no `Reset`: it already ended).
//!
//! Every stream started ends exactly once (by `Reset` or by the upstream's
//! end), and never outlives its last subscriber; `core/src/ledger.rs`
//! ([`crate::ledger::ShareLedger`], feature `testkit`) checks it.

use crate::time::Millis;
use crate::upstream::{CallTimeouts, UpstreamCall, UpstreamFailure};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

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
}

/// The sharing table; see the module documentation.
#[derive(Debug, Default)]
pub struct ShareTable {
    by_key: HashMap<ShareKey, StreamId>,
    streams: BTreeMap<StreamId, Stream>,
    subscribers: HashMap<SubscriberId, StreamId>,
    effects: VecDeque<ShareEffect>,
    next_stream: u64,
}

impl ShareTable {
    /// An empty table.
    pub fn new() -> Self {
        ShareTable::default()
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
    /// stream is removed and [`ShareEffect::Reset`] follows at once. An
    /// unknown subscriber (already ended with its stream) is ignored.
    pub fn handle_unsubscribe(&mut self, _now: Millis, subscriber: SubscriberId) {
        let Some(stream) = self.subscribers.remove(&subscriber) else {
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
    /// it ([`ShareEffect::End`]) and the stream is removed. A late end of a
    /// stream already reset is ignored.
    pub fn handle_stream_end(&mut self, _now: Millis, stream: StreamId, outcome: StreamEnd) {
        let Some(s) = self.streams.remove(&stream) else {
            return;
        };
        self.by_key.remove(&s.key);
        for subscriber in s.subscribers {
            self.subscribers.remove(&subscriber);
            self.effects.push_back(ShareEffect::End {
                subscriber,
                stream,
                outcome: outcome.clone(),
            });
        }
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
            })
            .collect()
    }

    /// Whether nothing is live and no effect is pending.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty() && self.subscribers.is_empty() && self.effects.is_empty()
    }
}
