//! The gateway server: the listener, the table of connection tasks it owns,
//! and graceful drain.
//!
//! Ownership: [`Running`] owns the accept task; the accept task owns one
//! task per TCP connection (in its `connections` table); a connection task
//! owns its WebSocket, its core state machine and its operation tasks; an
//! operation task owns its upstream calls. Dropping any owner cancels
//! everything below it, so nothing outlives what it belongs to.

use crate::config::Config;
use crate::http;
use crate::metrics::{History, Metrics, Sampled};
use crate::tasks;
use crate::upstreams::Upstreams;
use async_channel::{Receiver, Sender};
use futures_lite::FutureExt;
use smol::net::{TcpListener, TcpStream};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use terminus_core::graphql::{Limits as GraphqlLimits, Schema};
use terminus_core::server::ConnectionConfig;
use terminus_core::Millis;

/// One live operation as the `/admin` page lists it.
#[derive(Debug, Clone)]
pub struct OperationRow {
    /// The client's id for the operation.
    pub id: String,
    /// The root fields it selects.
    pub field: String,
    /// When it started.
    pub started: Instant,
}

/// What `/admin` may see of one WebSocket connection.
#[derive(Debug)]
pub struct ConnectionView {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The negotiated subprotocol.
    pub protocol: &'static str,
    /// When the connection was upgraded.
    pub opened: Instant,
    /// Its live operations, kept current by the connection task.
    pub operations: Mutex<Vec<OperationRow>>,
}

/// State shared by the listener, every connection and every HTTP request.
pub struct Gateway {
    /// The configuration the gateway runs with.
    pub config: Config,
    /// The loaded schema.
    pub schema: Schema,
    /// GraphQL bounds derived from `config.limits`.
    pub graphql_limits: GraphqlLimits,
    /// The upstream clients.
    pub upstreams: Arc<Upstreams>,
    /// The request values some upstream forwards as metadata, collected by
    /// the front ends (grpc/metadata.rs).
    pub context_capture: crate::grpc::metadata::ContextCapture,
    /// The JWT verifier when `[auth.jwt]` is configured (runtime-smol/src/jwt.rs).
    pub jwt: Option<Arc<crate::jwt::Verifier>>,
    /// Counters and gauges.
    pub metrics: Metrics,
    /// The `/admin` chart's history.
    pub history: History,
    /// True once drain has begun: `/readyz` fails and upgrades are refused.
    pub draining: AtomicBool,
    /// Closed when drain begins; every connection task watches it.
    pub(crate) shutdown: Receiver<()>,
    /// The address `admin.listen` is bound to, when configured.
    pub admin_addr: Mutex<Option<SocketAddr>>,
    /// Live WebSocket connections by id, for `/admin`.
    pub(crate) views: Mutex<BTreeMap<u64, Arc<ConnectionView>>>,
    next_connection: AtomicU64,
    /// The origin of the `Millis` clock handed to the core.
    origin: Instant,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Milliseconds since the gateway started: the core's clock.
    pub fn now(&self) -> Millis {
        Millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The `Instant` at which `Millis` `at` falls.
    pub fn instant_at(&self, at: Millis) -> Instant {
        self.origin + Duration::from_millis(at.0)
    }

    /// The core's per-connection configuration, from `config`.
    pub fn connection_config(&self) -> ConnectionConfig {
        let c = &self.config;
        ConnectionConfig {
            init_timeout: c.timeouts.init,
            keepalive_interval: c.timeouts.keepalive_interval,
            keepalive_timeout: c.timeouts.keepalive_timeout,
            legacy_ka_interval: c.timeouts.legacy_ka_interval,
            max_frame_bytes: c.limits.max_frame_bytes,
            max_operations: c.limits.max_operations_per_connection,
            max_outbound_bytes: c.limits.max_outbound_bytes,
        }
    }

    /// Values read from their owners, for `/metrics` and `/admin`.
    pub fn sampled(&self) -> Sampled {
        Sampled::process(
            self.upstreams.open_streams(),
            self.upstreams.open_connections(),
        )
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Why the gateway could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// The outcome of a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Operations still live when the drain ended (0 unless the drain
    /// timeout forced connections down).
    pub leaked_operations: i64,
    /// WebSocket connections that had not closed by the drain timeout and
    /// were dropped.
    pub forced_connections: i64,
    /// Tasks still alive after everything the server owned was dropped.
    pub live_tasks_after: usize,
    /// How long the drain took.
    pub took: Duration,
}

/// A running gateway.
pub struct Running {
    addr: SocketAddr,
    gateway: Arc<Gateway>,
    begin_drain: Option<Sender<()>>,
    task: smol::Task<DrainReport>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// The address the listener is bound to (the real port when the config
    /// said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state, for metrics and tests.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Drains: `/readyz` turns false, new WebSocket connections are refused,
    /// every live connection is closed with 1001 and its operations are
    /// cancelled; returns when all are gone or the drain timeout passed.
    pub async fn shutdown(mut self) -> DrainReport {
        self.begin_drain.take();
        self.task.await
    }
}

/// The gateway server.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Loads the schema and builds the upstreams that `config` names, then
    /// starts serving. Errors name the file and line where there is one.
    pub async fn start(config: Config) -> Result<Running, StartError> {
        let sdl = std::fs::read_to_string(&config.schema).map_err(|e| {
            StartError(format!(
                "{}: cannot read the schema: {e}",
                config.schema.display()
            ))
        })?;
        let schema = Schema::parse(&sdl, &config.schema.display().to_string())
            .map_err(|e| StartError(e.to_string()))?;
        let upstreams = Upstreams::from_config(&config).map_err(StartError)?;
        // Every @grpc field against its upstream's compiled descriptors: a
        // mismatch refuses to start, with file:line:col and the fix.
        crate::grpc::check::check_schema(&sdl, &config.schema.display().to_string(), &|name| {
            upstreams
                .grpc(name)
                .map(|upstream| upstream.descriptors().clone())
        })
        .map_err(|errors| {
            StartError(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        Server::start_with(config, schema, upstreams).await
    }

    /// Starts serving `schema` against `upstreams` (the demo builds both in
    /// code). Checks that every upstream the schema names is configured.
    pub async fn start_with(
        config: Config,
        schema: Schema,
        upstreams: Upstreams,
    ) -> Result<Running, StartError> {
        let names = schema.upstream_names();
        for name in &names.grpc {
            if upstreams.grpc(name).is_none() {
                return Err(StartError(format!(
                    "{}: the schema uses gRPC upstream {name:?}, but the config has no [grpc.{name}]",
                    config.schema.display()
                )));
            }
        }
        for name in &names.sql {
            if upstreams.mysql(name).is_none() {
                return Err(StartError(format!(
                    "{}: the schema uses MySQL database {name:?}, but the config has no [mysql.{name}]",
                    config.schema.display()
                )));
            }
        }
        // SQL fields against their statements' columns (upstreams.rs).
        upstreams
            .check_columns(&schema, &config.schema)
            .await
            .map_err(StartError)?;
        let jwt = match &config.auth.jwt {
            Some(jwt) => {
                let verifier = crate::jwt::Verifier::new(jwt).map_err(StartError)?;
                verifier.prefetch().await;
                Some(Arc::new(verifier))
            }
            None => None,
        };
        let tls = match &config.tls {
            Some(tls) => Some(crate::tls::ListenerTls::start(tls).map_err(StartError)?),
            None => None,
        };
        let admin_listener = match config.admin.listen {
            Some(at) => Some(
                TcpListener::bind(at)
                    .await
                    .map_err(|e| StartError(format!("cannot listen on admin.listen {at}: {e}")))?,
            ),
            None => None,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError(format!("cannot listen on {}: {e}", config.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError(format!("cannot read the listener's address: {e}")))?;
        let (shutdown_tx, shutdown_rx) = async_channel::bounded::<()>(1);
        let history_len = config.admin.history.as_secs().max(1) as usize;
        let graphql_limits = GraphqlLimits {
            max_depth: config.limits.max_query_depth,
            max_fields: config.limits.max_query_fields,
            max_aliases: config.limits.max_query_aliases,
            max_query_bytes: config.limits.max_query_bytes,
        };
        let gateway = Arc::new(Gateway {
            config,
            schema,
            graphql_limits,
            context_capture: crate::grpc::metadata::ContextCapture::from_keys(
                upstreams
                    .grpc_names()
                    .filter_map(|name| upstreams.grpc(name))
                    .flat_map(|upstream| upstream.context_keys()),
            ),
            upstreams: Arc::new(upstreams),
            jwt,
            metrics: Metrics::default(),
            history: History::new(history_len),
            draining: AtomicBool::new(false),
            shutdown: shutdown_rx,
            views: Mutex::new(BTreeMap::new()),
            admin_addr: Mutex::new(None),
            next_connection: AtomicU64::new(0),
            origin: Instant::now(),
        });
        let (begin_drain_tx, begin_drain_rx) = async_channel::bounded::<()>(1);
        let admin_task = admin_listener.map(|listener| {
            if let Ok(at) = listener.local_addr() {
                tracing::info!(%at, "admin surface listening");
            }
            *gateway.admin_addr.lock().unwrap_or_else(|e| e.into_inner()) =
                listener.local_addr().ok();
            tasks::spawn(crate::admin::serve_listener(gateway.clone(), listener))
        });
        let task = tasks::spawn(serve(
            gateway.clone(),
            listener,
            tls,
            admin_task,
            begin_drain_rx,
            shutdown_tx,
        ));
        tracing::info!(%addr, tls = gateway.config.tls.is_some(), "gateway listening");
        Ok(Running {
            addr,
            gateway,
            begin_drain: Some(begin_drain_tx),
            task,
        })
    }
}

enum Event {
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
    Finished(u64),
    Drain,
    Sample,
    DrainDeadline,
}

/// The accept loop, then the drain. Owns every connection task.
async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<crate::tls::ListenerTls>,
    // The admin listener's task: it lives as long as this loop.
    _admin: Option<smol::Task<()>>,
    begin_drain: Receiver<()>,
    shutdown: Sender<()>,
) -> DrainReport {
    let mut connections: HashMap<u64, smol::Task<()>> = HashMap::new();
    let (finished_tx, finished_rx) = async_channel::unbounded::<u64>();
    let mut shutdown = Some(shutdown);
    let mut drain_started: Option<Instant> = None;
    let mut next_sample = Instant::now();
    let mut tcp_ids = 0u64;
    // The TLS reload task lives as long as this loop (runtime-smol/src/tls.rs).
    let acceptor = tls
        .as_ref()
        .map_or_else(crate::tls::Acceptor::plain, |t| t.acceptor());
    loop {
        if let Some(started) = drain_started {
            if gateway.metrics.connections.load(Ordering::Relaxed) <= 0 {
                return finish_drain(&gateway, connections, started);
            }
        }
        let accept = async { Event::Accepted(listener.accept().await) };
        let finished = async {
            match finished_rx.recv().await {
                Ok(id) => Event::Finished(id),
                Err(_) => std::future::pending().await,
            }
        };
        let drain = async {
            if drain_started.is_some() {
                let deadline =
                    drain_started.unwrap_or_else(Instant::now) + gateway.config.timeouts.drain;
                smol::Timer::at(deadline).await;
                Event::DrainDeadline
            } else {
                let _ = begin_drain.recv().await;
                Event::Drain
            }
        };
        let sample = async {
            smol::Timer::at(next_sample).await;
            Event::Sample
        };
        match accept.or(finished).or(drain).or(sample).await {
            Event::Accepted(Ok((stream, peer))) => {
                tcp_ids += 1;
                let id = tcp_ids;
                let done = finished_tx.clone();
                let gateway = gateway.clone();
                let acceptor = acceptor.clone();
                connections.insert(
                    id,
                    tasks::spawn(async move {
                        http::serve_tcp(gateway, &acceptor, stream, peer).await;
                        let _ = done.send(id).await;
                    }),
                );
            }
            Event::Accepted(Err(error)) => {
                // Out of fds or similar: say so and back off briefly rather
                // than spin; the listener stays up.
                tracing::warn!(%error, "accept failed");
                smol::Timer::after(Duration::from_millis(50)).await;
            }
            Event::Finished(id) => {
                connections.remove(&id);
            }
            Event::Sample => {
                gateway
                    .history
                    .push(gateway.metrics.sample(gateway.sampled()));
                next_sample += Duration::from_secs(1);
                if next_sample < Instant::now() {
                    next_sample = Instant::now() + Duration::from_secs(1);
                }
            }
            Event::Drain => {
                tracing::info!(
                    connections = gateway.metrics.connections.load(Ordering::Relaxed),
                    operations = gateway.metrics.operations.load(Ordering::Relaxed),
                    "draining: readiness false, closing every connection with 1001"
                );
                gateway.draining.store(true, Ordering::SeqCst);
                // Closing the channel wakes every connection task at once.
                shutdown.take();
                drain_started = Some(Instant::now());
            }
            Event::DrainDeadline => {
                let started = drain_started.unwrap_or_else(Instant::now);
                tracing::warn!("drain timeout: dropping the connections still open");
                return finish_drain(&gateway, connections, started);
            }
        }
    }
}

fn finish_drain(
    gateway: &Gateway,
    connections: HashMap<u64, smol::Task<()>>,
    started: Instant,
) -> DrainReport {
    let leaked_operations = gateway.metrics.operations.load(Ordering::Relaxed);
    let forced_connections = gateway.metrics.connections.load(Ordering::Relaxed);
    // Idle HTTP keep-alive connections and anything the deadline caught.
    drop(connections);
    let report = DrainReport {
        leaked_operations,
        forced_connections,
        live_tasks_after: tasks::live_tasks(),
        took: started.elapsed(),
    };
    tracing::info!(
        leaked_operations = report.leaked_operations,
        forced_connections = report.forced_connections,
        took_ms = report.took.as_millis() as u64,
        "drained"
    );
    report
}
