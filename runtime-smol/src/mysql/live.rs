//! Shared polling for `@live` subscriptions.
//!
//! Identical live queries (same statement, parameters and interval on one
//! pool) share one poll task, so MySQL load follows the number of distinct
//! subscriptions, not the number of clients. The poll task is owned by the
//! subscribers: when the last [`LiveRows`] is dropped the task is dropped,
//! and a poll still running is killed like any dropped call.

use event_listener::Event;
use serde_json::Value;
use smol::Timer;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use terminus_core::UpstreamFailure;

/// What a poll runs: one statement, answered with its rows (a JSON array
/// of row objects). The pool (pool.rs) implements it; this module does not
/// know the pool.
pub(crate) trait RunRows: Send + Sync + 'static {
    /// Runs `statement` with `params` once.
    fn run_rows(
        self: &Arc<Self>,
        statement: &str,
        params: &[Value],
    ) -> impl Future<Output = Result<Value, UpstreamFailure>> + Send;
}

/// The result of the latest poll, numbered so each subscriber sees each
/// poll at most once.
type Latest = Option<(u64, Result<Value, UpstreamFailure>)>;

struct LiveState {
    latest: Mutex<Latest>,
    changed: Event,
}

/// One running poll, shared by its subscribers.
pub(crate) struct LivePoll {
    state: Arc<LiveState>,
    /// Dropped with the last subscriber, which cancels the polling.
    _task: smol::Task<()>,
}

/// The live polls of one pool, by statement, parameters and interval.
#[derive(Default)]
pub(crate) struct LiveHub {
    polls: Mutex<HashMap<String, Weak<LivePoll>>>,
}

impl LiveHub {
    /// Polls currently running.
    pub fn running(&self) -> usize {
        let polls = self.polls.lock().expect("live hub lock");
        polls.values().filter(|p| p.strong_count() > 0).count()
    }
}

/// One subscriber's view of a shared live query: each call of
/// [`next`](LiveRows::next) answers the rows of a poll this subscriber has
/// not seen yet (the latest one; a slow subscriber skips polls in between).
pub struct LiveRows {
    poll: Arc<LivePoll>,
    seen: u64,
}

impl std::fmt::Debug for LiveRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRows")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl LiveRows {
    /// The rows (a JSON array of row objects) of the next poll, or its
    /// failure. A new subscriber of a running poll gets the latest result at
    /// once. Polls go on after a failure; the caller decides whether a
    /// failure ends its subscription.
    pub async fn next(&mut self) -> Result<Value, UpstreamFailure> {
        loop {
            // Listen before looking, so a poll published in between wakes us.
            let listener = self.poll.state.changed.listen();
            if let Some((seq, result)) = &*self.poll.state.latest.lock().expect("live lock") {
                if *seq > self.seen {
                    self.seen = *seq;
                    return result.clone();
                }
            }
            listener.await;
        }
    }
}

/// Subscribes to `statement` with `params` polled every `every` through
/// `runner`, joining a running identical poll of `hub` if there is one.
pub(crate) fn subscribe<R: RunRows>(
    hub: &LiveHub,
    runner: &Arc<R>,
    statement: &str,
    params: &[Value],
    every: Duration,
) -> LiveRows {
    let key = format!(
        "{}\u{0}{}\u{0}{}",
        every.as_nanos(),
        statement,
        Value::Array(params.to_vec())
    );
    let mut polls = hub.polls.lock().expect("live hub lock");
    polls.retain(|_, p| p.strong_count() > 0);
    if let Some(poll) = polls.get(&key).and_then(Weak::upgrade) {
        return LiveRows { poll, seen: 0 };
    }
    let state = Arc::new(LiveState {
        latest: Mutex::new(None),
        changed: Event::new(),
    });
    let task = crate::tasks::spawn(poll_loop(
        runner.clone(),
        state.clone(),
        statement.to_owned(),
        params.to_vec(),
        every,
    ));
    let poll = Arc::new(LivePoll { state, _task: task });
    polls.insert(key, Arc::downgrade(&poll));
    LiveRows { poll, seen: 0 }
}

/// Runs the statement, publishes the result, sleeps `every`, and again.
/// The interval runs from the end of one poll to the start of the next, so
/// a slow database is never asked twice at once by the same poll.
async fn poll_loop<R: RunRows>(
    runner: Arc<R>,
    state: Arc<LiveState>,
    statement: String,
    params: Vec<Value>,
    every: Duration,
) {
    let mut seq = 0u64;
    loop {
        let result = runner.run_rows(&statement, &params).await;
        seq += 1;
        *state.latest.lock().expect("live lock") = Some((seq, result));
        state.changed.notify(usize::MAX);
        Timer::after(every).await;
    }
}
