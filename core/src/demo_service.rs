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
//!   ...: the first one period after the stream starts, each next one a
//!   period after the previous. The period is `every_ms`, at least
//!   [`MIN_TICK_MS`]. With `limit`, the stream ends right after tick
//!   `limit` (at once for a `limit` of 0 or less); when it reaches seq
//!   `fail_at` (before ending), it fails with gRPC status `INTERNAL` and the
//!   message `tick <seq> failed on purpose` instead of sending that tick.
//!   Integers are the proto's `int32`; the stream ends after tick
//!   `i32::MAX`, whose successor `int32` cannot carry.

use crate::time::Millis;
use serde_json::{json, Value};

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
        let int = |field: &str| -> Result<Option<i32>, String> {
            match request.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| format!("TicksRequest.{field} must be an int32, got {v}")),
            }
        };
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
            Millis(now.0.saturating_add(self.request.period_ms()))
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
