//! The bounded, cancellable connection pool of one configured database.

use super::conn::{Conn, ConnError, Target};
use super::live::{self, LiveHub, LiveRows, RunRows};
use super::protocol::Outcome;
use super::{parse_url, ConfigError, MysqlDbConfig};
use crate::tasks;
use crate::timeout::{timeout, Elapsed};
use async_lock::{Semaphore, SemaphoreGuardArc};
use serde_json::{json, Value};
use smol::Timer;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use terminus_core::{FailureKind, UpstreamFailure};

/// Upper bounds (seconds) of the query-duration histogram's buckets.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A Prometheus-style histogram of durations.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationHistogram {
    /// `(upper bound in seconds, observations <= bound)`, cumulative, in
    /// increasing order; observations above the last bound are only in
    /// `count`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all observations, in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

#[derive(Debug, Default)]
struct Durations {
    per_bucket: [u64; DURATION_BUCKETS.len()],
    sum_seconds: f64,
    count: u64,
}

impl Durations {
    fn observe(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| seconds <= *b) {
            self.per_bucket[i] += 1;
        }
        self.sum_seconds += seconds;
        self.count += 1;
    }

    fn snapshot(&self) -> DurationHistogram {
        let mut running = 0;
        let buckets = DURATION_BUCKETS
            .iter()
            .zip(self.per_bucket)
            .map(|(bound, n)| {
                running += n;
                (*bound, running)
            })
            .collect();
        DurationHistogram {
            buckets,
            sum_seconds: self.sum_seconds,
            count: self.count,
        }
    }
}

/// A snapshot of a pool for `/metrics` and `/admin`.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStats {
    /// The configured maximum of connections.
    pub max: usize,
    /// Open connections waiting in the pool.
    pub idle: usize,
    /// Connections lent to calls (including ones being killed and drained
    /// after a cancellation, and ones being opened).
    pub busy: usize,
    /// Calls that had to wait for a connection.
    pub acquire_waits_total: u64,
    /// Calls that gave up waiting (answered `UPSTREAM_BUSY`).
    pub acquire_timeouts_total: u64,
    /// Connections opened since start.
    pub connections_opened_total: u64,
    /// `KILL QUERY`s sent for cancelled or timed-out statements.
    pub kills_total: u64,
    /// Statements run (finished, failed or cancelled).
    pub queries_total: u64,
    /// Statements that failed or timed out.
    pub query_failures_total: u64,
    /// How long statements took once they had a connection.
    pub query_durations: DurationHistogram,
    /// Distinct `@live` polls running (each shared by its subscribers).
    pub live_polls: usize,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

pub(crate) struct Shared {
    name: String,
    config: MysqlDbConfig,
    target: Target,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
    busy: AtomicUsize,
    acquire_waits_total: AtomicU64,
    acquire_timeouts_total: AtomicU64,
    connections_opened_total: AtomicU64,
    kills_total: AtomicU64,
    queries_total: AtomicU64,
    query_failures_total: AtomicU64,
    durations: Mutex<Durations>,
    /// Tasks that kill and drain cancelled statements. The pool owns them;
    /// each ends within `kill_timeout`.
    recoveries: Mutex<Vec<smol::Task<()>>>,
    /// Shared `@live` polls.
    pub(crate) live: LiveHub,
    /// The session that sends `KILL QUERY` (see `kill_query`).
    killer: async_lock::Mutex<Option<Conn>>,
}

/// A pool of connections to one MySQL/MariaDB database. Create one per
/// configured database at start-up and share the `Arc`.
pub struct MysqlPool {
    shared: Arc<Shared>,
    /// Closes connections idle past `idle_timeout`; dropping the pool stops it.
    _reaper: smol::Task<()>,
}

impl std::fmt::Debug for MysqlPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlPool")
            .field("name", &self.shared.name)
            .field("host", &self.shared.target.host)
            .field("port", &self.shared.target.port)
            .finish_non_exhaustive()
    }
}

/// A connection lent to one call, with its pool permit. Dropping it returns
/// a clean connection to the pool, hands one whose statement is still
/// running to a recovery task (KILL QUERY + drain), and closes a broken one.
struct Lease {
    shared: Arc<Shared>,
    conn: Option<Conn>,
    permit: Option<SemaphoreGuardArc>,
    /// This lease belongs to a recovery task: never recover twice.
    recovering: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let shared = self.shared.clone();
        match self.conn.take() {
            Some(conn) if conn.is_clean() => {
                shared.idle.lock().expect("idle lock").push(Idle {
                    conn,
                    since: Instant::now(),
                });
            }
            Some(conn) if conn.has_pending() && !self.recovering => {
                // The call was dropped while its statement ran. Kill it from
                // another connection and drain this one in a task the pool
                // owns; the permit goes along so the pool stays bounded.
                let lease = Lease {
                    shared: shared.clone(),
                    conn: Some(conn),
                    permit: self.permit.take(),
                    recovering: true,
                };
                let task = tasks::spawn(async move {
                    let mut lease = lease;
                    let shared = lease.shared.clone();
                    shared.recover(&mut lease).await;
                });
                let mut recoveries = shared.recoveries.lock().expect("recoveries lock");
                recoveries.retain(|t| !t.is_finished());
                recoveries.push(task);
                // The recovery's lease now counts as busy.
                return;
            }
            // Broken, or a recovery that failed: close the socket.
            Some(_) | None => {}
        }
        shared.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Lease {
    fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a lease holds a connection while in use")
    }
}

/// What a shared `@live` poll runs (live.rs): one statement, its rows.
impl RunRows for Shared {
    async fn run_rows(
        self: &Arc<Self>,
        statement: &str,
        params: &[Value],
    ) -> Result<Value, UpstreamFailure> {
        self.run(statement, params)
            .await
            .map(|outcome| match outcome {
                Outcome::Rows(rows) => Value::Array(rows),
                Outcome::Done { .. } | Outcome::Prepared(_) => Value::Array(Vec::new()),
            })
    }
}

impl Shared {
    fn failure(&self, kind: FailureKind, message: impl std::fmt::Display) -> UpstreamFailure {
        UpstreamFailure::new(kind, format!("mysql `{}`: {message}", self.name))
    }

    fn connect_failure(&self, error: ConnError) -> UpstreamFailure {
        let target = format!("{}:{}", self.target.host, self.target.port);
        let why = match error {
            ConnError::Io(e) => e.to_string(),
            ConnError::Server { code, message, .. } => format!("{message} (error {code})"),
            ConnError::Protocol(m) | ConnError::BadInput(m) => m,
            ConnError::ConnectTimeout => format!(
                "no answer within connect_timeout {} ms",
                self.config.connect_timeout.as_millis()
            ),
        };
        self.failure(
            FailureKind::Unavailable,
            format!("cannot connect to {target}: {why}"),
        )
    }

    fn call_failure(&self, error: ConnError) -> UpstreamFailure {
        match error {
            ConnError::Server {
                code,
                state,
                message,
            } => super::errors::server_failure(
                &self.name,
                code,
                state.as_deref(),
                &message,
                self.config.hide_server_messages.unwrap_or(false),
            ),
            ConnError::BadInput(m) => self.failure(FailureKind::BadInput, m),
            ConnError::Io(e) => {
                self.failure(FailureKind::Unavailable, format!("connection lost: {e}"))
            }
            ConnError::Protocol(m) => {
                self.failure(FailureKind::Unavailable, format!("protocol error: {m}"))
            }
            ConnError::ConnectTimeout => {
                self.failure(FailureKind::Unavailable, "connect timed out")
            }
        }
    }

    async fn acquire(self: &Arc<Self>) -> Result<Lease, UpstreamFailure> {
        let permit = match self.permits.try_acquire_arc() {
            Some(permit) => permit,
            None => {
                self.acquire_waits_total.fetch_add(1, Ordering::Relaxed);
                let waited = timeout(self.config.acquire_timeout, self.permits.acquire_arc()).await;
                match waited {
                    Ok(permit) => permit,
                    Err(Elapsed) => {
                        self.acquire_timeouts_total.fetch_add(1, Ordering::Relaxed);
                        return Err(self.failure(
                            FailureKind::Busy,
                            format!(
                                "pool {} exhausted: all {} connections stayed busy for acquire_timeout {} ms",
                                self.name,
                                self.config.max_connections,
                                self.config.acquire_timeout.as_millis()
                            ),
                        ));
                    }
                }
            }
        };
        self.busy.fetch_add(1, Ordering::Relaxed);
        let mut lease = Lease {
            shared: self.clone(),
            conn: None,
            permit: Some(permit),
            recovering: false,
        };
        loop {
            // Newest first: the most recently used connection is the most
            // likely to be alive, and old ones age out.
            let candidate = self.idle.lock().expect("idle lock").pop();
            let Some(Idle { mut conn, since }) = candidate else {
                break;
            };
            if since.elapsed() >= self.config.idle_timeout {
                continue;
            }
            if !conn.idle_socket_is_silent().await {
                // Closed by the server (restart, KILL CONNECTION, wait_timeout).
                continue;
            }
            if since.elapsed() >= self.config.health_check_interval {
                let pinged = timeout(self.config.connect_timeout, conn.ping()).await;
                if !matches!(pinged, Ok(Ok(_))) {
                    continue;
                }
            }
            lease.conn = Some(conn);
            return Ok(lease);
        }
        let conn = Conn::connect(
            &self.target,
            self.config.connect_timeout,
            self.config.max_rows,
        )
        .await
        .map_err(|e| self.connect_failure(e))?;
        let mut conn = conn;
        if let Some(time_zone) = &self.config.time_zone {
            let (set_to, suffix) = super::protocol::zone_offset(time_zone)
                .map_err(|m| self.failure(FailureKind::Unavailable, m))?;
            timeout(
                self.config.connect_timeout,
                conn.set_time_zone(&set_to, &suffix),
            )
            .await
            .unwrap_or(Err(ConnError::ConnectTimeout))
            .map_err(|e| self.connect_failure(e))?;
        }
        self.connections_opened_total
            .fetch_add(1, Ordering::Relaxed);
        lease.conn = Some(conn);
        Ok(lease)
    }

    /// Kills the statement still running on the lease's connection and
    /// drains its answer, all within `kill_timeout`. Leaves the connection
    /// in the lease only if it ended clean and answers a ping.
    async fn recover(&self, lease: &mut Lease) {
        let Some(conn) = lease.conn.as_mut() else {
            return;
        };
        if !conn.has_pending() {
            if !conn.is_clean() {
                lease.conn = None;
            }
            return;
        }
        let thread_id = conn.thread_id();
        let recovered = timeout(self.config.kill_timeout, async {
            if self.kill_query(thread_id).await.is_err() {
                return false;
            }
            conn.drain().await.is_ok() && conn.ping().await.is_ok()
        })
        .await
        .unwrap_or(false);
        if !recovered {
            lease.conn = None;
        }
    }

    /// `KILL QUERY <thread_id>` on the pool's kill connection: a session of
    /// its own, outside `max_connections` (the pool's connections may all be
    /// busy, and a kill must not wait for one), opened on the first kill and
    /// kept, so a kill costs one round trip. Kills are serialized on it. A
    /// kill connection found dead is replaced once.
    async fn kill_query(&self, thread_id: u32) -> Result<(), ConnError> {
        self.kills_total.fetch_add(1, Ordering::Relaxed);
        let mut killer = self.killer.lock().await;
        let mut last_error = None;
        for _ in 0..2 {
            let reusable = match killer.take() {
                Some(mut conn) if conn.is_clean() => {
                    conn.idle_socket_is_silent().await.then_some(conn)
                }
                _ => None,
            };
            let mut conn = match reusable {
                Some(conn) => conn,
                None => match Conn::connect(&self.target, self.config.connect_timeout, 1).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        last_error = Some(e);
                        continue;
                    }
                },
            };
            match conn.query_text(&format!("KILL QUERY {thread_id}")).await {
                // 1094: unknown thread id. The statement ended on its own.
                Ok(_) | Err(ConnError::Server { code: 1094, .. }) => {
                    *killer = Some(conn);
                    return Ok(());
                }
                Err(ConnError::Server {
                    code,
                    state,
                    message,
                }) => {
                    *killer = Some(conn);
                    return Err(ConnError::Server {
                        code,
                        state,
                        message,
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or(ConnError::ConnectTimeout))
    }

    /// Runs one statement on a pooled connection within the statement
    /// timeout.
    pub(crate) async fn run(
        self: &Arc<Self>,
        statement: &str,
        params: &[Value],
    ) -> Result<Outcome, UpstreamFailure> {
        let mut lease = self.acquire().await?;
        let started = Instant::now();
        // Counted here so a call dropped mid-statement is counted too.
        self.queries_total.fetch_add(1, Ordering::Relaxed);
        let ran = timeout(
            self.config.statement_timeout,
            lease.conn().run(statement, params),
        )
        .await
        .ok();
        let result = match ran {
            Some(Ok(outcome)) => Ok(outcome),
            Some(Err(e)) => Err(self.call_failure(e)),
            None => {
                self.recover(&mut lease).await;
                Err(self.failure(
                    FailureKind::Timeout,
                    format!(
                        "statement exceeded statement_timeout {} ms and was killed",
                        self.config.statement_timeout.as_millis()
                    ),
                ))
            }
        };
        self.durations
            .lock()
            .expect("durations lock")
            .observe(started.elapsed());
        if result.is_err() {
            self.query_failures_total.fetch_add(1, Ordering::Relaxed);
        }
        drop(lease);
        result
    }

    /// Closes idle connections past `idle_timeout`.
    fn close_expired(&self) -> Vec<Conn> {
        let mut idle = self.idle.lock().expect("idle lock");
        let (expired, keep): (Vec<Idle>, Vec<Idle>) = idle
            .drain(..)
            .partition(|i| i.since.elapsed() >= self.config.idle_timeout);
        *idle = keep;
        expired.into_iter().map(|i| i.conn).collect()
    }
}

impl MysqlPool {
    /// A pool for the database `name` configured by `config`. Connections
    /// open lazily, on the first calls.
    pub fn new(name: &str, config: &MysqlDbConfig) -> Result<Arc<MysqlPool>, ConfigError> {
        let error = |message: String| ConfigError {
            db: name.to_owned(),
            message,
        };
        config.validate().map_err(error)?;
        let mut target = parse_url(&config.url).map_err(error)?;
        target.tls = super::conn::TargetTls::new(config.ssl_mode, &config.tls, &target.host)
            .map_err(error)?;
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            config: config.clone(),
            target,
            permits: Arc::new(Semaphore::new(config.max_connections)),
            idle: Mutex::new(Vec::new()),
            busy: AtomicUsize::new(0),
            acquire_waits_total: AtomicU64::new(0),
            acquire_timeouts_total: AtomicU64::new(0),
            connections_opened_total: AtomicU64::new(0),
            kills_total: AtomicU64::new(0),
            queries_total: AtomicU64::new(0),
            query_failures_total: AtomicU64::new(0),
            durations: Mutex::new(Durations::default()),
            recoveries: Mutex::new(Vec::new()),
            live: LiveHub::default(),
            killer: async_lock::Mutex::new(None),
        });
        let reaper = tasks::spawn(reap_idle(Arc::downgrade(&shared)));
        Ok(Arc::new(MysqlPool {
            shared,
            _reaper: reaper,
        }))
    }

    /// The database's configured name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether the server's error texts are replaced by generic ones
    /// (`hide_server_messages`; unset counts as off here, the gateway
    /// decides it from its listener in `Upstreams::from_config`).
    pub fn hides_server_messages(&self) -> bool {
        self.shared.config.hide_server_messages.unwrap_or(false)
    }

    /// Runs a statement that returns rows and answers a JSON array of row
    /// objects (column name -> value). `params` bind the `?` placeholders in
    /// order. Dropping the returned future while the statement runs kills it
    /// on the server.
    pub async fn query(&self, statement: &str, params: &[Value]) -> Result<Value, UpstreamFailure> {
        match self.shared.run(statement, params).await? {
            Outcome::Rows(rows) => Ok(Value::Array(rows)),
            // A statement without a result set has no rows.
            Outcome::Done { .. } | Outcome::Prepared(_) => Ok(Value::Array(Vec::new())),
        }
    }

    /// The column names (or aliases) `statement` returns, learnt by
    /// preparing it on a pooled connection without running it; bounded by
    /// `statement_timeout`. The gateway checks its schema with this at
    /// start-up (`Upstreams::check_columns` in `runtime-smol/src/upstreams.rs`).
    pub async fn columns(&self, statement: &str) -> Result<Vec<String>, UpstreamFailure> {
        let mut lease = self.shared.acquire().await?;
        let prepared = timeout(
            self.shared.config.statement_timeout,
            lease.conn().columns(statement),
        )
        .await
        .ok();
        match prepared {
            Some(Ok(columns)) => Ok(columns),
            Some(Err(e)) => Err(self.shared.call_failure(e)),
            None => {
                self.shared.recover(&mut lease).await;
                Err(self.shared.failure(
                    FailureKind::Timeout,
                    "preparing the statement exceeded statement_timeout",
                ))
            }
        }
    }

    /// Runs a statement that changes rows and answers
    /// `{"affectedRows": n, "lastInsertId": n}` (both 0 for a statement that
    /// returned rows). Dropping the future while it runs kills it.
    pub async fn execute(
        &self,
        statement: &str,
        params: &[Value],
    ) -> Result<Value, UpstreamFailure> {
        let (affected_rows, last_insert_id) = match self.shared.run(statement, params).await? {
            Outcome::Done {
                affected_rows,
                last_insert_id,
            } => (affected_rows, last_insert_id),
            Outcome::Rows(_) | Outcome::Prepared(_) => (0, 0),
        };
        Ok(json!({"affectedRows": affected_rows, "lastInsertId": last_insert_id}))
    }

    /// Subscribes to `statement` polled every `every` for a `@live` field:
    /// each [`LiveRows::next`] answers one poll's rows. Identical
    /// subscriptions (same statement, parameters and interval) share one
    /// poll; dropping the last subscriber stops it (and kills a poll that is
    /// running).
    pub fn live(&self, statement: &str, params: &[Value], every: Duration) -> LiveRows {
        live::subscribe(
            &self.shared.live,
            &self.shared,
            statement,
            params,
            every,
            self.shared.config.live_retries,
        )
    }

    /// Counters and gauges for `/metrics`.
    pub fn stats(&self) -> PoolStats {
        let s = &self.shared;
        PoolStats {
            max: s.config.max_connections,
            idle: s.idle.lock().expect("idle lock").len(),
            busy: s.busy.load(Ordering::Relaxed),
            acquire_waits_total: s.acquire_waits_total.load(Ordering::Relaxed),
            acquire_timeouts_total: s.acquire_timeouts_total.load(Ordering::Relaxed),
            connections_opened_total: s.connections_opened_total.load(Ordering::Relaxed),
            kills_total: s.kills_total.load(Ordering::Relaxed),
            queries_total: s.queries_total.load(Ordering::Relaxed),
            query_failures_total: s.query_failures_total.load(Ordering::Relaxed),
            query_durations: s.durations.lock().expect("durations lock").snapshot(),
            live_polls: s.live.running(),
        }
    }
}

/// Every `min(idle_timeout, health_check_interval)`, closes idle connections
/// past `idle_timeout` (saying COM_QUIT, bounded by `connect_timeout`). Holds
/// only a weak reference, so it never keeps a dropped pool alive.
async fn reap_idle(shared: Weak<Shared>) {
    let period = match shared.upgrade() {
        // Not faster than 10 Hz, whatever the configuration says.
        Some(s) => s
            .config
            .idle_timeout
            .min(s.config.health_check_interval)
            .max(Duration::from_millis(100)),
        None => return,
    };
    loop {
        Timer::after(period).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let expired = shared.close_expired();
        shared
            .recoveries
            .lock()
            .expect("recoveries lock")
            .retain(|t| !t.is_finished());
        let bound = shared.config.connect_timeout;
        drop(shared);
        for conn in expired {
            // A peer that does not answer the quit is dropped all the same.
            let _ = timeout(bound, conn.quit()).await;
        }
    }
}

/// `(metric name, type, help, value of one pool)`.
type CounterSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PoolStats) -> u64,
);

/// Writes the pools' series in the Prometheus text format (one `# HELP` and
/// `# TYPE` per metric, one series per pool labelled `db`):
/// `terminus_mysql_connections{db,state="idle|busy"}`,
/// `terminus_mysql_connections_max`, `terminus_mysql_live_polls`,
/// `terminus_mysql_acquire_waits_total`,
/// `terminus_mysql_acquire_timeouts_total`,
/// `terminus_mysql_connections_opened_total`, `terminus_mysql_kills_total`,
/// `terminus_mysql_queries_total`, `terminus_mysql_query_failures_total` and
/// the histogram `terminus_mysql_query_duration_seconds`.
pub fn write_prometheus(pools: &[(&str, PoolStats)], out: &mut String) {
    use std::fmt::Write as _;
    let label = |db: &str| {
        db.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let _ = writeln!(
        out,
        "# HELP terminus_mysql_connections Open MySQL connections by state.\n# TYPE terminus_mysql_connections gauge"
    );
    for (db, stats) in pools {
        let db = label(db);
        let _ = writeln!(
            out,
            "terminus_mysql_connections{{db=\"{db}\",state=\"idle\"}} {}\nterminus_mysql_connections{{db=\"{db}\",state=\"busy\"}} {}",
            stats.idle, stats.busy
        );
    }
    let simple: [CounterSeries; 8] = [
        (
            "terminus_mysql_connections_max",
            "gauge",
            "The pool's configured maximum of connections.",
            |s| s.max as u64,
        ),
        (
            "terminus_mysql_live_polls",
            "gauge",
            "Distinct @live polls running, each shared by its subscribers.",
            |s| s.live_polls as u64,
        ),
        (
            "terminus_mysql_acquire_waits_total",
            "counter",
            "Calls that waited for a free connection.",
            |s| s.acquire_waits_total,
        ),
        (
            "terminus_mysql_acquire_timeouts_total",
            "counter",
            "Calls answered UPSTREAM_BUSY after acquire_timeout.",
            |s| s.acquire_timeouts_total,
        ),
        (
            "terminus_mysql_connections_opened_total",
            "counter",
            "MySQL connections opened.",
            |s| s.connections_opened_total,
        ),
        (
            "terminus_mysql_kills_total",
            "counter",
            "KILL QUERY sent for cancelled or timed-out statements.",
            |s| s.kills_total,
        ),
        (
            "terminus_mysql_queries_total",
            "counter",
            "Statements run.",
            |s| s.queries_total,
        ),
        (
            "terminus_mysql_query_failures_total",
            "counter",
            "Statements that failed or timed out.",
            |s| s.query_failures_total,
        ),
    ];
    for (name, kind, help, value) in simple {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (db, stats) in pools {
            let _ = writeln!(out, "{name}{{db=\"{}\"}} {}", label(db), value(stats));
        }
    }
    let name = "terminus_mysql_query_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Statement durations once a connection was acquired.\n# TYPE {name} histogram"
    );
    for (db, stats) in pools {
        let db = label(db);
        let histogram = &stats.query_durations;
        for (bound, count) in &histogram.buckets {
            let _ = writeln!(out, "{name}_bucket{{db=\"{db}\",le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{db=\"{db}\",le=\"+Inf\"}} {count}\n{name}_sum{{db=\"{db}\"}} {sum}\n{name}_count{{db=\"{db}\"}} {count}",
            count = histogram.count,
            sum = histogram.sum_seconds
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut durations = Durations::default();
        durations.observe(Duration::from_micros(500));
        durations.observe(Duration::from_millis(20));
        durations.observe(Duration::from_secs(60));
        let snapshot = durations.snapshot();
        assert_eq!(snapshot.count, 3);
        assert_eq!(snapshot.buckets[0], (0.001, 1));
        assert_eq!(snapshot.buckets[3], (0.025, 2));
        assert_eq!(snapshot.buckets.last().unwrap().1, 2);
        assert!((snapshot.sum_seconds - 60.0205).abs() < 1e-9);
    }

    #[test]
    fn prometheus_text_names_every_pool() {
        let stats = PoolStats {
            max: 4,
            idle: 1,
            busy: 2,
            acquire_waits_total: 3,
            acquire_timeouts_total: 0,
            connections_opened_total: 3,
            kills_total: 1,
            queries_total: 9,
            query_failures_total: 1,
            query_durations: Durations::default().snapshot(),
            live_polls: 2,
        };
        let mut out = String::new();
        write_prometheus(&[("main", stats.clone()), ("a\"b", stats)], &mut out);
        assert!(out.contains("terminus_mysql_connections{db=\"main\",state=\"busy\"} 2\n"));
        assert!(out.contains("terminus_mysql_acquire_waits_total{db=\"a\\\"b\"} 3\n"));
        assert!(out.contains("terminus_mysql_query_duration_seconds_count{db=\"main\"} 0\n"));
        assert_eq!(
            out.matches("# TYPE terminus_mysql_kills_total counter")
                .count(),
            1
        );
    }
}
