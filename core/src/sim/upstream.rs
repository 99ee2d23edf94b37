//! The simulated upstream: a trait the driver talks to, and a scripted
//! implementation. The wasm simulator plugs the GraphQL executor in through
//! the same trait.

use super::SplitMix64;
use crate::{Millis, OpId, OperationRequest, UpstreamEvent};
use serde_json::json;
use std::collections::BTreeMap;

/// Names one operation across every simulated connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpKey {
    /// Index of the connection in the simulation.
    pub conn: usize,
    /// The connection's handle of the operation.
    pub op: OpId,
}

/// What answers the operations a simulated server starts.
pub trait Upstream {
    /// A server emitted `Start` for `key`.
    fn start(&mut self, now: Millis, key: OpKey, request: &OperationRequest);
    /// The server's `Cancel` for `key` reached the upstream: release it and
    /// emit nothing more for it.
    fn cancel(&mut self, now: Millis, key: OpKey);
    /// The next instant at which [`Self::poll_event`] has something.
    fn poll_timeout(&self) -> Option<Millis>;
    /// One event due at or before `now`, if any.
    fn poll_event(&mut self, now: Millis) -> Option<(OpKey, UpstreamEvent)>;
    /// Operations started and neither finished nor cancelled.
    fn live_operations(&self) -> usize;
}

/// How the [`ScriptedUpstream`] answers.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptConfig {
    /// Results per subscription, inclusive range (queries and mutations,
    /// recognised by not starting with `subscription`, get exactly one).
    pub nexts: (u64, u64),
    /// Delay before each result, inclusive range in ms.
    pub period_ms: (u64, u64),
    /// Chance that an operation fails with an `Error` instead of one of its
    /// results (the "upstream error" fault).
    pub error_probability: f64,
}

impl Default for ScriptConfig {
    fn default() -> Self {
        ScriptConfig {
            nexts: (1, 10),
            period_ms: (10, 1_000),
            error_probability: 0.0,
        }
    }
}

#[derive(Debug)]
struct ScriptedOp {
    due: Millis,
    remaining: u64,
    seq: u64,
    fail_at: Option<u64>,
}

/// Each started operation produces its results on a timer, then `Complete`;
/// or, by seeded chance or when the query contains `fail`, an `Error`.
#[derive(Debug)]
pub struct ScriptedUpstream {
    config: ScriptConfig,
    rng: SplitMix64,
    ops: BTreeMap<OpKey, ScriptedOp>,
}

impl ScriptedUpstream {
    /// A scripted upstream with its own seed.
    pub fn new(seed: u64, config: ScriptConfig) -> Self {
        ScriptedUpstream {
            config,
            rng: SplitMix64::new(seed),
            ops: BTreeMap::new(),
        }
    }

    fn delay(&mut self) -> u64 {
        self.rng
            .between(self.config.period_ms.0, self.config.period_ms.1)
    }
}

impl Upstream for ScriptedUpstream {
    fn start(&mut self, now: Millis, key: OpKey, request: &OperationRequest) {
        let stream = request.query.trim_start().starts_with("subscription");
        let nexts = if stream {
            self.rng.between(self.config.nexts.0, self.config.nexts.1)
        } else {
            1
        };
        let fail_at = if request.query.contains("fail") {
            Some(0)
        } else if self.rng.chance(self.config.error_probability) {
            Some(self.rng.below(nexts + 1))
        } else {
            None
        };
        let due = Millis(now.0 + self.delay());
        self.ops.insert(
            key,
            ScriptedOp {
                due,
                remaining: nexts,
                seq: 0,
                fail_at,
            },
        );
    }

    fn cancel(&mut self, _now: Millis, key: OpKey) {
        self.ops.remove(&key);
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.ops.values().map(|op| op.due).min()
    }

    fn poll_event(&mut self, now: Millis) -> Option<(OpKey, UpstreamEvent)> {
        let (&key, _) = self
            .ops
            .iter()
            .filter(|(_, op)| op.due <= now)
            .min_by_key(|(key, op)| (op.due, **key))?;
        let delay = self.delay();
        let op = self.ops.get_mut(&key)?;
        if op.fail_at == Some(op.seq) {
            self.ops.remove(&key);
            let error =
                json!({"message": "upstream failed", "extensions": {"code": "UPSTREAM_ERROR"}});
            return Some((key, UpstreamEvent::Error(vec![error])));
        }
        if op.remaining == 0 {
            self.ops.remove(&key);
            return Some((key, UpstreamEvent::Complete));
        }
        let seq = op.seq;
        op.seq += 1;
        op.remaining -= 1;
        op.due = Millis(now.0 + delay);
        Some((key, UpstreamEvent::Next(json!({"data": {"seq": seq}}))))
    }

    fn live_operations(&self) -> usize {
        self.ops.len()
    }
}
