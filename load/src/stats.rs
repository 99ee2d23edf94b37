//! What the simulated clients count, shared by all of them.
//!
//! Counters are atomics; the three histograms sit behind a mutex each (one
//! lock per received frame, uncontended with the default single executor
//! thread). Latency is only recorded while `recording` is set, i.e. during
//! the hold window, so the ramp does not pollute it.

use event_listener::Event;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Largest value the histograms hold: 10 minutes in microseconds.
const HISTOGRAM_MAX_US: u64 = 600_000_000;

/// A broadcast signal for every client ("stop now", "start churning"),
/// set once.
#[derive(Debug, Default)]
pub struct Signal {
    set: AtomicBool,
    event: Event,
}

impl Signal {
    /// Sets the signal and wakes every waiter.
    pub fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    /// Whether it was set.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Resolves once it is set.
    pub async fn wait(&self) {
        loop {
            if self.is_set() {
                return;
            }
            let listener = self.event.listen();
            if self.is_set() {
                return;
            }
            listener.await;
        }
    }
}

/// Counters and histograms shared by every client.
#[derive(Debug)]
pub struct Shared {
    /// The origin of every timestamp of the run.
    pub start: Instant,
    /// Connections in TCP connect or WebSocket handshake.
    pub connecting: AtomicUsize,
    /// Sockets open (handshake done, not yet dropped).
    pub open: AtomicUsize,
    /// Connections acknowledged and still open.
    pub acked: AtomicUsize,
    /// Acknowledgements received since the start.
    pub acked_total: AtomicU64,
    /// When the last `connection_ack` arrived, µs since the start.
    pub last_ack_us: AtomicU64,
    /// Connection attempts that failed (connect, handshake, ack).
    pub connect_failures: AtomicU64,
    /// Subscriptions that received at least one result and are still live.
    pub subscriptions_flowing: AtomicUsize,
    /// Results (`next` / `data`) received.
    pub frames: AtomicU64,
    /// Completed churn cycles (subscribe, first result, complete) or
    /// reconnect cycles (connect, subscribe, first results, drop).
    pub cycles: AtomicU64,
    /// Operations the server ended with `error`.
    pub operation_errors: AtomicU64,
    /// Operations the server ended with `complete` (unexpected for ticks
    /// without a limit).
    pub operation_completes: AtomicU64,
    /// Connections the server closed (close frame or dropped socket)
    /// before the client meant to end them.
    pub server_closes: AtomicU64,
    /// Ticks that arrived before their schedule anchored at the first tick.
    pub early_ticks: AtomicU64,
    /// Ticks never received: the seq numbers a subscription skipped (the
    /// demo upstream numbers every tick it sends, one after another).
    pub skipped_ticks: AtomicU64,
    /// Whether latency is being recorded (the hold window).
    pub recording: AtomicBool,
    /// Every client stops when this is set.
    pub stop: Signal,
    /// Hold and churn modes: set once every connection of the ramp is up;
    /// the clients subscribe then, so results do not slow the ramp down.
    pub go: Signal,
    /// Lateness of each tick against its subscription's schedule, in µs.
    pub lateness: Mutex<Histogram<u64>>,
    /// Inter-arrival time minus the period (clamped at 0), in µs.
    pub gap_excess: Mutex<Histogram<u64>>,
    /// Connect start to `connection_ack`, in µs.
    pub handshake: Mutex<Histogram<u64>>,
    /// A `subscribe` sent to its first result, in µs (while recording).
    pub first_result: Mutex<Histogram<u64>>,
    /// The first few distinct failure messages, for the report.
    pub failures: Mutex<Vec<String>>,
    /// Operation errors by `extensions.code` (UPSTREAM_BUSY, ...).
    pub error_codes: Mutex<BTreeMap<String, u64>>,
    /// `say` mutations sent by the publisher.
    pub says_sent: AtomicU64,
    /// `say` mutations answered with data.
    pub says_ok: AtomicU64,
    /// `say` mutations answered with an error.
    pub says_failed: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

impl Shared {
    /// Fresh counters; the clock starts now.
    pub fn new() -> Shared {
        let histogram = || {
            Mutex::new(
                Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3)
                    .expect("constant histogram bounds are valid"),
            )
        };
        Shared {
            start: Instant::now(),
            connecting: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            acked: AtomicUsize::new(0),
            acked_total: AtomicU64::new(0),
            last_ack_us: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            subscriptions_flowing: AtomicUsize::new(0),
            frames: AtomicU64::new(0),
            cycles: AtomicU64::new(0),
            operation_errors: AtomicU64::new(0),
            operation_completes: AtomicU64::new(0),
            server_closes: AtomicU64::new(0),
            early_ticks: AtomicU64::new(0),
            skipped_ticks: AtomicU64::new(0),
            recording: AtomicBool::new(false),
            stop: Signal::default(),
            go: Signal::default(),
            lateness: histogram(),
            gap_excess: histogram(),
            handshake: histogram(),
            first_result: histogram(),
            failures: Mutex::new(Vec::new()),
            error_codes: Mutex::new(BTreeMap::new()),
            says_sent: AtomicU64::new(0),
            says_ok: AtomicU64::new(0),
            says_failed: AtomicU64::new(0),
        }
    }

    /// Microseconds since the start of the run.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Seconds since the start of the run.
    pub fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Records `value_us` into `histogram` (saturating at its bound).
    pub fn record(histogram: &Mutex<Histogram<u64>>, value_us: u64) {
        let mut histogram = histogram.lock().unwrap_or_else(|e| e.into_inner());
        histogram.saturating_record(value_us.max(1));
    }

    /// Keeps the first 20 distinct failure messages.
    pub fn note_failure(&self, message: String) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() < 20 && !failures.contains(&message) {
            failures.push(message);
        }
    }

    /// Counts one operation error with `code`; distinct codes are bounded
    /// (the first 32 are kept, later new ones count as "(other)").
    pub fn note_error_code(&self, code: &str) {
        let mut codes = self.error_codes.lock().unwrap_or_else(|e| e.into_inner());
        let key = if codes.contains_key(code) || codes.len() < 32 {
            code
        } else {
            "(other)"
        };
        *codes.entry(key.to_owned()).or_default() += 1;
    }

    /// Clears the latency histograms (start of the hold window).
    pub fn reset_latency(&self) {
        for histogram in [&self.lateness, &self.gap_excess] {
            histogram.lock().unwrap_or_else(|e| e.into_inner()).reset();
        }
    }
}

/// p50 / p99 / max of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, PartialEq)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

impl Summary {
    /// Summarises a histogram of microseconds.
    pub fn of(histogram: &Mutex<Histogram<u64>>) -> Summary {
        let histogram = histogram.lock().unwrap_or_else(|e| e.into_inner());
        if histogram.is_empty() {
            return Summary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// One subscription's timing state, for latency against its schedule.
///
/// The demo upstream cannot stamp a tick with its send time, so latency is
/// measured against the schedule: tick `seq` of a subscription whose first
/// received tick was `seq0` at `t0` is expected at
/// `t0 + (seq - seq0) * period`; its lateness is the receipt time minus
/// that (negative values count as early and record 0). The first tick
/// anchors the schedule, so it is not itself recorded. The gap excess is
/// the inter-arrival time minus the period, clamped at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickTrack {
    anchor_seq: i64,
    last_seq: i64,
    anchor_us: u64,
    last_us: u64,
}

/// What one tick measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickTiming {
    /// Lateness against the schedule in µs (0 when early).
    pub lateness_us: u64,
    /// Whether the tick came before its schedule.
    pub early: bool,
    /// Inter-arrival time minus the period in µs (0 when shorter).
    pub gap_excess_us: u64,
    /// Seq numbers skipped since the previous tick.
    pub skipped: u64,
}

impl TickTrack {
    /// Starts the schedule at the first received tick.
    pub fn first(seq: i64, at_us: u64) -> TickTrack {
        TickTrack {
            anchor_seq: seq,
            last_seq: seq,
            anchor_us: at_us,
            last_us: at_us,
        }
    }

    /// A later tick `seq` received at `at_us`.
    pub fn tick(&mut self, seq: i64, at_us: u64, period: Duration) -> TickTiming {
        let period_us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
        let ticks_since = u64::try_from(seq - self.anchor_seq).unwrap_or(0);
        let expected = self
            .anchor_us
            .saturating_add(ticks_since.saturating_mul(period_us));
        let gap = at_us.saturating_sub(self.last_us);
        self.last_us = at_us;
        let skipped = u64::try_from(seq - self.last_seq - 1).unwrap_or(0);
        self.last_seq = self.last_seq.max(seq);
        TickTiming {
            skipped,
            lateness_us: at_us.saturating_sub(expected),
            early: at_us < expected,
            gap_excess_us: gap.saturating_sub(period_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_lateness_follows_the_schedule_from_the_first_tick() {
        let period = Duration::from_millis(100);
        let mut track = TickTrack::first(3, 1_000_000);
        let on_time = track.tick(4, 1_100_000, period);
        assert_eq!(
            on_time,
            TickTiming {
                lateness_us: 0,
                early: false,
                gap_excess_us: 0,
                skipped: 0,
            }
        );
        let late = track.tick(5, 1_207_000, period);
        assert_eq!(late.lateness_us, 7_000);
        assert_eq!(late.gap_excess_us, 7_000);
        // Back on schedule: no lateness, and a short gap is no excess.
        let back = track.tick(6, 1_300_000, period);
        assert_eq!(back.lateness_us, 0);
        assert_eq!(back.gap_excess_us, 0);
        let early = track.tick(7, 1_399_000, period);
        assert!(early.early);
        assert_eq!(early.lateness_us, 0);
        // A skipped seq is expected two periods later, not one.
        let skipped = track.tick(9, 1_600_500, period);
        assert_eq!(skipped.lateness_us, 500);
        assert_eq!(skipped.skipped, 1, "seq 8 never came");
        assert_eq!(track.tick(10, 1_700_000, period).skipped, 0);
    }

    #[test]
    fn summaries_are_in_milliseconds() {
        let shared = Shared::new();
        for us in 1..=1000u64 {
            Shared::record(&shared.lateness, us * 1000);
        }
        let summary = Summary::of(&shared.lateness);
        assert_eq!(summary.count, 1000);
        assert!((summary.p50_ms - 500.0).abs() < 1.0, "{summary:?}");
        assert!((summary.p99_ms - 990.0).abs() < 1.0, "{summary:?}");
        assert!((summary.max_ms - 1000.0).abs() < 1.0, "{summary:?}");
        shared.reset_latency();
        assert_eq!(Summary::of(&shared.lateness), Summary::default());
    }

    #[test]
    fn stop_signal_wakes_waiters_and_later_callers() {
        let shared = std::sync::Arc::new(Shared::new());
        let waiter = {
            let shared = shared.clone();
            std::thread::spawn(move || smol::block_on(shared.stop.wait()))
        };
        std::thread::sleep(Duration::from_millis(20));
        shared.stop.set();
        waiter.join().unwrap();
        smol::block_on(shared.stop.wait());
        assert!(shared.stop.is_set());
    }
}
