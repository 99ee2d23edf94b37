//! A deterministic simulation of the shared-subscription table
//! (`core/src/share.rs`) under its [`ShareLedger`](crate::ledger::ShareLedger):
//! subscribers on a few keys come and go at random, the upstream sends items
//! and now and then ends or fails a stream, on a virtual clock. Each run
//! ends with a mass disconnect and reports every broken rule, and whether
//! anything is left alive.

use super::rng::SplitMix64;
use crate::ledger::{AuditedShare, Violation};
use crate::share::{LagPolicy, ShareEffect, ShareInput, ShareKey, StreamEnd, SubscriberId};
use crate::upstream::{CallTimeouts, FailureKind, UpstreamFailure};
use crate::Millis;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// What a shared run did, and what it found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharedReport {
    /// Upstream streams started.
    pub streams_started: usize,
    /// The most streams live at once.
    pub peak_streams: usize,
    /// The most subscribers live at once.
    pub peak_subscribers: usize,
    /// Items handed to subscribers (one per subscriber per item).
    pub deliveries: u64,
    /// Subscribers ended by their stream's end or failure.
    pub ended_by_upstream: usize,
    /// Items a lagging subscriber skipped ([`LagPolicy::Skip`]).
    pub skipped: u64,
    /// Lagging subscribers closed ([`LagPolicy::Close`]).
    pub closed_slow: usize,
    /// Streams and subscribers still live after the mass disconnect (must
    /// be 0, 0).
    pub left_alive: (usize, usize),
    /// Every broken rule.
    pub violations: Vec<Violation>,
}

/// One choice of the driver, taken from a byte (the fuzz target feeds its
/// input through [`run_shared_ops`]).
fn step(
    audited: &mut AuditedShare,
    (rng_byte, arg): (u8, u8),
    now: Millis,
    keys: usize,
    live: &mut BTreeSet<SubscriberId>,
    next_sub: &mut u64,
    report: &mut SharedReport,
) {
    let input = match rng_byte % 9 {
        // Subscribe (most common).
        0..=2 => {
            let subscriber = SubscriberId(*next_sub);
            *next_sub += 1;
            ShareInput::Subscribe {
                subscriber,
                key: key(usize::from(arg) % keys.max(1)),
            }
        }
        // Unsubscribe one live subscriber.
        3 | 4 => match live.iter().nth(usize::from(arg) % live.len().max(1)) {
            Some(subscriber) => ShareInput::Unsubscribe {
                subscriber: *subscriber,
            },
            None => return,
        },
        // An item on a stream (possibly one already gone: a late item).
        5 | 6 => ShareInput::Item {
            stream: crate::share::StreamId(u64::from(arg) % (report.streams_started as u64 + 1)),
        },
        // A subscriber fell behind its stream.
        8 => match live.iter().nth(usize::from(arg) % live.len().max(1)) {
            Some(subscriber) => ShareInput::Full {
                subscriber: *subscriber,
                missed: 1 + u64::from(arg % 7),
            },
            None => return,
        },
        // The upstream ends or fails a stream (possibly a late end).
        _ => ShareInput::StreamEnd {
            stream: crate::share::StreamId(
                u64::from(arg / 2) % (report.streams_started as u64 + 1),
            ),
            outcome: if arg % 2 == 0 {
                StreamEnd::Complete
            } else {
                StreamEnd::Failed(UpstreamFailure::new(
                    FailureKind::Failed,
                    "simulated failure",
                ))
            },
        },
    };
    if let ShareInput::Subscribe { subscriber, .. } = &input {
        live.insert(*subscriber);
    }
    if let ShareInput::Unsubscribe { subscriber } = &input {
        live.remove(subscriber);
    }
    for effect in audited.handle(now, input) {
        match effect {
            ShareEffect::Start { .. } => report.streams_started += 1,
            ShareEffect::Deliver { stream } => {
                report.deliveries += audited.table().subscribers(stream).count() as u64
            }
            // The host still holds it: it reads the stream's last items
            // (and may fall behind while it does) until it unsubscribes.
            ShareEffect::End { .. } => report.ended_by_upstream += 1,
            ShareEffect::Skip { missed, .. } => report.skipped += missed,
            ShareEffect::Close { subscriber, .. } => {
                live.remove(&subscriber);
                report.closed_slow += 1;
            }
            ShareEffect::Reset { .. } => {}
        }
    }
    report.peak_streams = report.peak_streams.max(audited.table().stream_count());
    report.peak_subscribers = report
        .peak_subscribers
        .max(audited.table().subscriber_count());
}

/// The key of the simulated `clock(everyMs: n)` field.
fn key(n: usize) -> ShareKey {
    ShareKey::new(
        "demo",
        "terminus.demo.v1.Demo/Ticks",
        &json!({ "everyMs": n }),
        &BTreeMap::new(),
        &CallTimeouts::default(),
    )
}

/// Drives the table with `ops` (pairs of bytes: a choice and its argument)
/// over `keys` distinct keys, one virtual millisecond apart, then
/// disconnects everyone and checks the end. Lagging subscribers skip
/// ([`LagPolicy::Skip`], the default).
pub fn run_shared_ops(ops: &[u8], keys: usize) -> SharedReport {
    run_shared_ops_with(ops, keys, LagPolicy::default())
}

/// [`run_shared_ops`] with lagging subscribers following `policy`.
pub fn run_shared_ops_with(ops: &[u8], keys: usize, policy: LagPolicy) -> SharedReport {
    let mut audited = AuditedShare::with_policy(policy);
    let mut live = BTreeSet::new();
    let mut next_sub = 0;
    let mut report = SharedReport::default();
    let mut now = Millis::ZERO;
    for pair in ops.chunks(2) {
        let (choice, arg) = (pair[0], pair.get(1).copied().unwrap_or(0));
        step(
            &mut audited,
            (choice, arg),
            now,
            keys,
            &mut live,
            &mut next_sub,
            &mut report,
        );
        now = Millis(now.0 + 1);
    }
    report.violations = audited.finish(now);
    report.left_alive = (
        audited.table().stream_count(),
        audited.table().subscriber_count(),
    );
    if !audited.table().is_empty() {
        report.violations.push(Violation::Simulation(
            crate::ledger::SimulationViolation::UpstreamOperationsAtEnd {
                count: audited.table().stream_count(),
            },
        ));
    }
    report
}

/// A seeded run of `steps` random choices over `keys` keys: the same seed
/// gives the same run on every platform. Odd seeds close lagging
/// subscribers ([`LagPolicy::Close`]), even ones skip.
pub fn run_shared(seed: u64, steps: usize, keys: usize) -> SharedReport {
    let mut rng = SplitMix64::new(seed);
    let ops: Vec<u8> = (0..steps * 2).map(|_| rng.next_u64() as u8).collect();
    let policy = if seed % 2 == 1 {
        LagPolicy::Close
    } else {
        LagPolicy::Skip
    };
    run_shared_ops_with(&ops, keys, policy)
}
