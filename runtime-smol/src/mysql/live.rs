//! Shared and multiplexed polling for `@live` subscriptions.
//!
//! Identical live queries (same statement, parameters and interval on one
//! pool) share one subscription state, so MySQL load follows the number of
//! distinct subscriptions, not the number of clients. Beyond that, live
//! queries with the same statement and interval but different parameters
//! are polled together when the statement allows it
//! (`terminus_core::graphql::live_cohort`: its one parameter compared with
//! `=`/`IN`, no `LIMIT`, grouping or aggregates): a *cohort* runs one
//! statement per interval for up to 1024 parameter sets, bound as an `IN`
//! list, and splits the rows per parameter set by the key column. Other
//! statements are polled per parameter set.
//!
//! The poll task is owned by the subscribers: when the last [`LiveRows`] of
//! a parameter set is dropped it leaves its cohort, and when the last member
//! leaves the cohort's task is dropped (a poll still running is killed like
//! any dropped call). Every sleep between polls carries up to 10 % of the
//! interval of random jitter, so polls of many subscriptions spread out. A
//! failed poll is retried `live_retries` times with backoff (250 ms,
//! doubling, at most 5 s each) before the failure reaches the subscribers.

use crate::timeout::until;
use event_listener::Event;
use serde_json::{Map, Value};
use smol::Timer;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use terminus_core::graphql::{live_cohort, RelationSql, KEY_COLUMN, MAX_KEYS_PER_STATEMENT};
use terminus_core::{FailureKind, UpstreamFailure};

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

impl LiveState {
    fn new() -> Arc<LiveState> {
        Arc::new(LiveState {
            latest: Mutex::new(None),
            changed: Event::new(),
        })
    }

    fn publish(&self, result: Result<Value, UpstreamFailure>) {
        let mut latest = self.latest.lock().expect("live lock");
        let seq = latest.as_ref().map_or(0, |(seq, _)| *seq) + 1;
        *latest = Some((seq, result));
        drop(latest);
        self.changed.notify(usize::MAX);
    }

    fn has_result(&self) -> bool {
        self.latest.lock().expect("live lock").is_some()
    }
}

/// One parameter set's subscription state, shared by its subscribers.
pub(crate) struct LivePoll {
    state: Arc<LiveState>,
    /// A poll of its own (statements that cannot be multiplexed); dropped
    /// with the last subscriber, which cancels the polling.
    _task: Option<smol::Task<()>>,
    /// Or its cohort, and its key there: it leaves the cohort when dropped.
    cohort: Option<(Arc<Cohort>, String)>,
}

impl Drop for LivePoll {
    fn drop(&mut self) {
        if let Some((cohort, key)) = &self.cohort {
            cohort.members.map.lock().expect("cohort lock").remove(key);
        }
    }
}

/// The parameter sets of one multiplexed statement.
struct Members {
    /// Member key -> (the parameter value, its state).
    map: Mutex<HashMap<String, (Value, Weak<LiveState>)>>,
    /// A member joined: it gets its first rows before the interval ends.
    joined: Event,
}

/// One multiplexed statement, polled for all its members.
pub(crate) struct Cohort {
    members: Arc<Members>,
    /// Dropped with the last member.
    _task: smol::Task<()>,
}

/// The live polls of one pool, by statement, parameters and interval, and
/// the cohorts, by statement and interval.
#[derive(Default)]
pub(crate) struct LiveHub {
    polls: Mutex<HashMap<String, Weak<LivePoll>>>,
    cohorts: Mutex<HashMap<String, Weak<Cohort>>>,
}

impl LiveHub {
    /// Poll tasks currently running: single polls and cohorts.
    pub fn running(&self) -> usize {
        let polls = self.polls.lock().expect("live hub lock");
        let single = polls
            .values()
            .filter_map(Weak::upgrade)
            .filter(|p| p._task.is_some())
            .count();
        drop(polls);
        let cohorts = self.cohorts.lock().expect("live hub lock");
        single + cohorts.values().filter(|c| c.strong_count() > 0).count()
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
    /// failure (after the poll's retries). A new subscriber of a running
    /// poll gets the latest result at once. Polls go on after a failure; the
    /// caller decides whether a failure ends its subscription.
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
/// `runner`, joining a running identical subscription of `hub`, or the
/// cohort of its statement, if there is one. A failed poll is retried
/// `retries` times with backoff.
pub(crate) fn subscribe<R: RunRows>(
    hub: &LiveHub,
    runner: &Arc<R>,
    statement: &str,
    params: &[Value],
    every: Duration,
    retries: u32,
) -> LiveRows {
    let poller = Poller {
        runner: runner.clone(),
        retries,
    };
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
    let state = LiveState::new();
    let form = match params {
        [_] => live_cohort(statement),
        _ => None,
    };
    let poll = match form {
        Some(form) => {
            let cohort = cohort_for(hub, poller, statement, form, every);
            let member = Value::Array(params.to_vec()).to_string();
            cohort
                .members
                .map
                .lock()
                .expect("cohort lock")
                .insert(member.clone(), (params[0].clone(), Arc::downgrade(&state)));
            cohort.members.joined.notify(usize::MAX);
            Arc::new(LivePoll {
                state,
                _task: None,
                cohort: Some((cohort, member)),
            })
        }
        None => {
            let task = crate::tasks::spawn(poll_loop(
                poller,
                state.clone(),
                statement.to_owned(),
                params.to_vec(),
                every,
            ));
            Arc::new(LivePoll {
                state,
                _task: Some(task),
                cohort: None,
            })
        }
    };
    polls.insert(key, Arc::downgrade(&poll));
    LiveRows { poll, seen: 0 }
}

/// The running cohort of `statement` at `every`, or a new one.
fn cohort_for<R: RunRows>(
    hub: &LiveHub,
    poller: Poller<R>,
    statement: &str,
    form: RelationSql,
    every: Duration,
) -> Arc<Cohort> {
    let key = format!("{}\u{0}{statement}", every.as_nanos());
    let mut cohorts = hub.cohorts.lock().expect("live hub lock");
    cohorts.retain(|_, c| c.strong_count() > 0);
    if let Some(cohort) = cohorts.get(&key).and_then(Weak::upgrade) {
        return cohort;
    }
    let members = Arc::new(Members {
        map: Mutex::new(HashMap::new()),
        joined: Event::new(),
    });
    let task = crate::tasks::spawn(cohort_loop(poller, members.clone(), form, every));
    let cohort = Arc::new(Cohort {
        members,
        _task: task,
    });
    cohorts.insert(key, Arc::downgrade(&cohort));
    cohort
}

/// `every` plus up to 10 % of it, at random.
fn jittered(every: Duration) -> Duration {
    every + every.mul_f64(fastrand::f64() / 10.0)
}

/// The runner of a poll and how often it retries.
struct Poller<R> {
    runner: Arc<R>,
    retries: u32,
}

/// Runs `statement`, retrying a failure up to `retries` times with backoff
/// (250 ms, doubling, at most 5 s). Bad input is not retried.
async fn run_with_retries<R: RunRows>(
    poller: &Poller<R>,
    statement: &str,
    params: &[Value],
) -> Result<Vec<Value>, UpstreamFailure> {
    let mut attempt = 0u32;
    loop {
        match poller.runner.run_rows(statement, params).await {
            Ok(Value::Array(rows)) => return Ok(rows),
            Ok(_) => return Ok(Vec::new()),
            Err(failure) if attempt < poller.retries && failure.kind != FailureKind::BadInput => {
                attempt += 1;
                let backoff = Duration::from_millis(250)
                    .saturating_mul(1 << (attempt - 1).min(5))
                    .min(Duration::from_secs(5));
                tracing::debug!(%failure, attempt, "live poll failed; retrying");
                Timer::after(backoff).await;
            }
            Err(failure) => return Err(failure),
        }
    }
}

/// Runs the statement, publishes the result, sleeps `every` (with jitter),
/// and again. The interval runs from the end of one poll to the start of
/// the next, so a slow database is never asked twice at once by the same
/// poll.
async fn poll_loop<R: RunRows>(
    poller: Poller<R>,
    state: Arc<LiveState>,
    statement: String,
    params: Vec<Value>,
    every: Duration,
) {
    loop {
        let result = run_with_retries(&poller, &statement, &params)
            .await
            .map(Value::Array);
        state.publish(result);
        Timer::after(jittered(every)).await;
    }
}

/// The text a key compares by: `7` and `"7"` are the same key.
fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Polls the cohort's members (only those without a result yet, when
/// `only_new`): one statement per 1024 parameter sets, rows split by key.
async fn poll_members<R: RunRows>(
    poller: &Poller<R>,
    members: &Members,
    form: &RelationSql,
    only_new: bool,
) {
    let list: Vec<(Value, Arc<LiveState>)> = {
        let mut map = members.map.lock().expect("cohort lock");
        map.retain(|_, (_, state)| state.strong_count() > 0);
        map.values()
            .filter_map(|(key, state)| state.upgrade().map(|s| (key.clone(), s)))
            .filter(|(_, state)| !only_new || !state.has_result())
            .collect()
    };
    for chunk in list.chunks(MAX_KEYS_PER_STATEMENT) {
        let keys: Vec<Value> = chunk.iter().map(|(key, _)| key.clone()).collect();
        let (statement, params) = form.statement(&keys, &Map::new());
        match run_with_retries(poller, &statement, &params).await {
            Ok(rows) => {
                let mut groups: HashMap<String, Vec<Value>> = HashMap::new();
                for mut row in rows {
                    let Some(cols) = row.as_object_mut() else {
                        continue;
                    };
                    let Some(key) = cols.remove(KEY_COLUMN) else {
                        continue;
                    };
                    groups.entry(key_text(&key)).or_default().push(row);
                }
                for (key, state) in chunk {
                    let rows = groups.get(&key_text(key)).cloned().unwrap_or_default();
                    state.publish(Ok(Value::Array(rows)));
                }
            }
            Err(failure) => {
                for (_, state) in chunk {
                    state.publish(Err(failure.clone()));
                }
            }
        }
    }
}

/// Polls every member once per interval (with jitter); a member that joins
/// in between is polled at once, together with the others that joined
/// meanwhile, so it does not wait a whole interval for its first rows.
async fn cohort_loop<R: RunRows>(
    poller: Poller<R>,
    members: Arc<Members>,
    form: RelationSql,
    every: Duration,
) {
    loop {
        poll_members(&poller, &members, &form, false).await;
        let deadline = Instant::now() + jittered(every);
        loop {
            let joined = members.joined.listen();
            let waiting = members
                .map
                .lock()
                .expect("cohort lock")
                .values()
                .any(|(_, s)| s.upgrade().is_some_and(|s| !s.has_result()));
            if waiting {
                poll_members(&poller, &members, &form, true).await;
                continue;
            }
            // A new member is polled at once; otherwise the interval ends.
            let mut interval = Timer::at(deadline);
            let woken = until(&mut interval, joined).await.is_ok();
            if !woken {
                break;
            }
        }
    }
}
