//! The gateway's numbers: `/metrics` in Prometheus text format, the JSON
//! behind `/admin`, and the short history its chart draws.
//!
//! Gauges that describe things owned elsewhere (WebSocket connections,
//! tasks, upstream streams and connections, fds, memory) are read at scrape
//! time from their owners, so they cannot drift from the truth.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use terminus_core::protocol::close;

/// Counters and gauges that the server itself maintains.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Live operations over all connections (as the connections' state
    /// machines count them, plus in-flight HTTP POST operations).
    pub operations: AtomicI64,
    /// Operations started since the process started.
    pub operations_started_total: AtomicU64,
    /// Operations the gateway cancelled (client complete, socket closed,
    /// drain) since the process started.
    pub operations_cancelled_total: AtomicU64,
    /// Live streaming HTTP responses (SSE and multipart subscriptions,
    /// runtime-smol/src/streaming.rs), bounded by `limits.max_http_streams`.
    pub http_streams: AtomicI64,
    /// Panics caught inside connection tasks.
    pub panics_total: AtomicU64,
    /// HTTP requests answered, any path.
    pub http_requests_total: AtomicU64,
    /// Credentials refused: `connection_init` rejected, POST answered 401.
    pub auth_rejected_total: AtomicU64,
    /// TLS handshakes on the listener that failed or timed out.
    pub tls_handshake_failures_total: AtomicU64,
    /// Closed WebSocket connections by close code (`abnormal` when the
    /// socket ended without a close frame).
    closed_by_code: Mutex<BTreeMap<String, u64>>,
}

/// Values read from their owners at scrape time.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Sampled {
    /// Open WebSocket connections (the admission machine's count).
    pub connections: usize,
    /// Open gRPC streams over all upstreams.
    pub upstream_streams: usize,
    /// Open upstream TCP connections (gRPC and MySQL).
    pub upstream_connections: usize,
    /// Live tasks spawned through `terminus::tasks::spawn`.
    pub tasks: usize,
    /// Open file descriptors of the process.
    pub open_fds: usize,
    /// Resident memory of the process in bytes.
    pub resident_memory_bytes: u64,
    /// Live `@shared` upstream streams (runtime-smol/src/share.rs).
    pub shared_streams: usize,
    /// Subscribers of those streams.
    pub shared_subscribers: usize,
    /// Items lagging `@shared` subscribers skipped (`limits.shared_lag =
    /// "skip"`) since the process started.
    pub shared_skipped_total: u64,
}

impl Sampled {
    /// Reads the process-wide values; the gateway's own values are filled
    /// in by the caller.
    pub fn process(
        connections: usize,
        upstream_streams: usize,
        upstream_connections: usize,
    ) -> Sampled {
        Sampled {
            connections,
            upstream_streams,
            upstream_connections,
            tasks: crate::tasks::live_tasks(),
            open_fds: open_fds(),
            resident_memory_bytes: resident_memory_bytes(),
            shared_streams: 0,
            shared_subscribers: 0,
            shared_skipped_total: 0,
        }
    }
}

/// One point of the `/admin` chart.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// Live operations.
    pub operations: i64,
    /// Everything read from its owner.
    #[serde(flatten)]
    pub sampled: Sampled,
}

impl Metrics {
    /// Records a closed WebSocket connection with `code` (1006, the socket
    /// ended without a close frame, is counted as `abnormal`).
    pub fn record_close(&self, code: u16) {
        let key = if code == close::ABNORMAL_CLOSURE {
            "abnormal".to_string()
        } else {
            code.to_string()
        };
        let mut map = self
            .closed_by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry(key).or_default() += 1;
    }

    /// Closed connections with `code`, for tests and the admin page.
    pub fn closed_with(&self, code: u16) -> u64 {
        let map = self
            .closed_by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(&code.to_string()).copied().unwrap_or(0)
    }

    /// Adds `delta` to the live-operations gauge.
    pub fn add_operations(&self, delta: i64) {
        self.operations.fetch_add(delta, Ordering::Relaxed);
    }

    /// A point for the chart, with `sampled` read from the owners.
    pub fn sample(&self, sampled: Sampled) -> Sample {
        Sample {
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs(),
            operations: self.operations.load(Ordering::Relaxed),
            sampled,
        }
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self, sampled: Sampled) -> String {
        let mut out = String::with_capacity(2048);
        let mut gauge = |name: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            "terminus_connections",
            "Open WebSocket connections.",
            sampled.connections.to_string(),
        );
        gauge(
            "terminus_operations",
            "Live operations.",
            self.operations.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            "terminus_upstream_streams",
            "Open gRPC streams to upstreams.",
            sampled.upstream_streams.to_string(),
        );
        gauge(
            "terminus_shared_streams",
            "Live @shared upstream streams (one per sharing key).",
            sampled.shared_streams.to_string(),
        );
        gauge(
            "terminus_shared_subscribers",
            "Operations subscribed to @shared upstream streams.",
            sampled.shared_subscribers.to_string(),
        );
        gauge(
            "terminus_upstream_connections",
            "Open upstream TCP connections.",
            sampled.upstream_connections.to_string(),
        );
        gauge(
            "terminus_tasks",
            "Live tasks the gateway spawned.",
            sampled.tasks.to_string(),
        );
        gauge(
            "terminus_http_streams",
            "Live SSE and multipart subscription responses.",
            self.http_streams.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            "process_open_fds",
            "Open file descriptors.",
            sampled.open_fds.to_string(),
        );
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            sampled.resident_memory_bytes.to_string(),
        );
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "terminus_operations_started_total",
            "Operations started.",
            self.operations_started_total.load(Ordering::Relaxed),
        );
        counter(
            "terminus_operations_cancelled_total",
            "Operations cancelled by the gateway (client complete, socket closed, drain).",
            self.operations_cancelled_total.load(Ordering::Relaxed),
        );
        counter(
            "terminus_shared_skipped_total",
            "Items of @shared streams skipped by lagging subscribers (limits.shared_lag = \"skip\").",
            sampled.shared_skipped_total,
        );
        counter(
            "terminus_panics_total",
            "Panics caught inside connection tasks.",
            self.panics_total.load(Ordering::Relaxed),
        );
        counter(
            "terminus_http_requests_total",
            "HTTP requests answered.",
            self.http_requests_total.load(Ordering::Relaxed),
        );
        counter(
            "terminus_auth_rejected_total",
            "Credentials refused (connection_init rejected, POST answered 401).",
            self.auth_rejected_total.load(Ordering::Relaxed),
        );
        counter(
            "terminus_tls_handshake_failures_total",
            "TLS handshakes on the listener that failed or timed out.",
            self.tls_handshake_failures_total.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP terminus_connections_closed_total WebSocket connections closed, by close code.\n# TYPE terminus_connections_closed_total counter"
        );
        let map = self
            .closed_by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (code, count) in map.iter() {
            let _ = writeln!(
                out,
                "terminus_connections_closed_total{{code=\"{code}\"}} {count}"
            );
        }
        out
    }
}

/// What an autoscaler and a balancer read besides the load itself:
/// capacity, readiness and reloads (docs/metrics.md, docs/deploy.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// `limits.max_connections`.
    pub max_connections: usize,
    /// Whether `/readyz` answers 200.
    pub ready: bool,
    /// Whether a drain has begun.
    pub draining: bool,
    /// The schema generation (0 at start, one more per reload).
    pub config_generation: u64,
    /// Successful reloads.
    pub reloads_ok: u64,
    /// Failed reloads (nothing changed).
    pub reloads_failed: u64,
}

/// Appends the [`Capacity`] series to a `/metrics` text.
pub fn write_capacity(out: &mut String, capacity: &Capacity) {
    let gauges = [
        (
            "terminus_connections_max",
            "The connection cap (limits.max_connections); compare terminus_connections.",
            capacity.max_connections as u64,
        ),
        (
            "terminus_ready",
            "1 while /readyz answers 200 (0 when draining, or full with limits.unready_at_capacity).",
            u64::from(capacity.ready),
        ),
        (
            "terminus_draining",
            "1 once a drain has begun.",
            u64::from(capacity.draining),
        ),
        (
            "terminus_config_generation",
            "The loaded schema and upstreams: 0 at start, one more per successful reload.",
            capacity.config_generation,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP terminus_reloads_total Reloads (SIGHUP, POST /admin/reload), by result.\n# TYPE terminus_reloads_total counter\nterminus_reloads_total{{result=\"ok\"}} {}\nterminus_reloads_total{{result=\"failed\"}} {}",
        capacity.reloads_ok, capacity.reloads_failed
    );
}

/// A bounded history of samples for the `/admin` chart.
#[derive(Debug)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
    capacity: usize,
}

impl History {
    /// Keeps at most `capacity` samples (at least one).
    pub fn new(capacity: usize) -> History {
        History {
            samples: Mutex::new(VecDeque::with_capacity(capacity.clamp(1, 4096))),
            capacity: capacity.max(1),
        }
    }

    /// Appends `sample`, forgetting the oldest beyond the capacity.
    pub fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        while samples.len() >= self.capacity {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Every kept sample, oldest first.
    pub fn snapshot(&self) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.iter().copied().collect()
    }
}

/// Open file descriptors, counted in /proc/self/fd (0 where there is no /proc).
pub fn open_fds() -> usize {
    // The directory handle that read_dir itself holds is one of the entries;
    // leave it out so the number is the process's own.
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count().saturating_sub(1))
        .unwrap_or(0)
}

/// Resident memory in bytes, from VmRSS in /proc/self/status (0 where there
/// is no /proc). VmRSS is in kB, which spares us the page size.
pub fn resident_memory_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Reads one sample-free gauge or counter value from Prometheus text
/// (`name` exactly, or `name{labels}`); for tests and tools.
pub fn parse_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_every_series_and_parses_back() {
        let metrics = Metrics::default();
        metrics.add_operations(5);
        metrics.add_operations(-1);
        metrics.record_close(close::SUBSCRIBER_ALREADY_EXISTS);
        metrics.record_close(close::SUBSCRIBER_ALREADY_EXISTS);
        metrics.record_close(close::ABNORMAL_CLOSURE);
        let text = metrics.render(Sampled::process(3, 2, 1));
        for name in [
            "terminus_connections",
            "terminus_operations",
            "terminus_upstream_streams",
            "terminus_shared_streams",
            "terminus_shared_subscribers",
            "terminus_upstream_connections",
            "terminus_tasks",
            "terminus_operations_started_total",
            "terminus_operations_cancelled_total",
            "terminus_panics_total",
            "terminus_shared_skipped_total",
            "process_open_fds",
            "process_resident_memory_bytes",
        ] {
            assert!(
                parse_value(&text, name).is_some(),
                "{name} missing in\n{text}"
            );
        }
        assert_eq!(parse_value(&text, "terminus_operations"), Some(4.0));
        assert_eq!(parse_value(&text, "terminus_connections"), Some(3.0));
        assert_eq!(parse_value(&text, "terminus_upstream_streams"), Some(2.0));
        assert_eq!(
            parse_value(
                &text,
                &format!(
                    "terminus_connections_closed_total{{code=\"{}\"}}",
                    close::SUBSCRIBER_ALREADY_EXISTS
                )
            ),
            Some(2.0)
        );
        assert_eq!(
            parse_value(
                &text,
                "terminus_connections_closed_total{code=\"abnormal\"}"
            ),
            Some(1.0)
        );
        assert!(parse_value(&text, "process_open_fds").unwrap() > 0.0);
        assert!(parse_value(&text, "process_resident_memory_bytes").unwrap() > 0.0);
    }

    #[test]
    fn fd_count_follows_opened_files() {
        let before = open_fds();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert!(open_fds() > before);
        drop(file);
    }

    #[test]
    fn history_is_bounded() {
        let metrics = Metrics::default();
        let history = History::new(3);
        for _ in 0..5 {
            history.push(metrics.sample(Sampled::default()));
        }
        assert_eq!(history.snapshot().len(), 3);
    }
}
