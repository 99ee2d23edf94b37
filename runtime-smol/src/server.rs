//! The gateway server: the listener, the table of connection tasks it owns,
//! and graceful drain.
//!
//! Ownership: [`Running`] owns the accept task; the accept task owns one
//! task per TCP connection (in its `connections` table); a connection task
//! owns its WebSocket, its core state machine and its operation tasks; an
//! operation task owns its upstream calls. Dropping any owner cancels
//! everything below it, so nothing outlives what it belongs to.

use crate::config::Config;
use crate::gateway::Gateway;
use crate::http;
use crate::tasks;
use crate::upstreams::Upstreams;
use async_channel::{Receiver, Sender};
use futures_lite::FutureExt;
use smol::net::{TcpListener, TcpStream};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use terminus_core::graphql::Schema;
use terminus_core::protocol::close;
use terminus_core::server::DrainEffect;

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
        let (schema, upstreams) = crate::reload::load(&config).map_err(StartError)?;
        Server::start_with(config, schema, upstreams).await
    }

    /// Starts serving `schema` against `upstreams` (the demo builds both in
    /// code). Checks that every upstream the schema names is configured.
    pub async fn start_with(
        config: Config,
        schema: Schema,
        mut upstreams: Upstreams,
    ) -> Result<Running, StartError> {
        upstreams.set_shared(&config.limits);
        crate::reload::check(&config, &schema, &upstreams)
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
        let gateway = Arc::new(Gateway::new(config, schema, upstreams, jwt, shutdown_rx));
        let (begin_drain_tx, begin_drain_rx) = async_channel::bounded::<()>(1);
        let admin_task = admin_listener.map(|listener| {
            if let Ok(at) = listener.local_addr() {
                tracing::info!(%at, "admin surface listening");
            }
            *gateway.admin_addr.lock().unwrap_or_else(|e| e.into_inner()) =
                listener.local_addr().ok();
            tasks::spawn(serve_admin_listener(gateway.clone(), listener))
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

/// The accept loop, then the drain. Owns every connection task. The drain
/// is the core's machine (`terminus_core::server::Drain`, held by the
/// [`Gateway`]): this loop feeds it the signal and its deadline, and does
/// what it says: readiness false (the machine's state, read by `/readyz`),
/// every connection shut down, and the end.
async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<crate::tls::ListenerTls>,
    // The admin listener's task: it lives as long as this loop.
    _admin: Option<smol::Task<()>>,
    begin_drain: Receiver<()>,
    shutdown: Sender<()>,
) -> DrainReport {
    let mut connections = ConnectionTasks::new();
    let mut shutdown = Some(shutdown);
    let mut drain_started: Option<Instant> = None;
    let mut next_sample = Instant::now();
    // The TLS reload task lives as long as this loop (runtime-smol/src/tls.rs).
    let acceptor = tls
        .as_ref()
        .map_or_else(crate::tls::Acceptor::plain, |t| t.acceptor());
    loop {
        // Do what the drain machine asked for.
        loop {
            let effect = gateway.drain().poll_effect();
            match effect {
                None => break,
                Some(DrainEffect::ReadinessFalse) => {
                    tracing::info!(
                        connections = gateway.open_connections(),
                        operations = gateway.metrics.operations.load(Ordering::Relaxed),
                        unready_ms = gateway.config.timeouts.drain_unready.as_millis() as u64,
                        "draining: readiness false"
                    );
                }
                Some(DrainEffect::ShutdownConnections) => {
                    tracing::info!(
                        connections = gateway.open_connections(),
                        close = close::GOING_AWAY,
                        "draining: closing every connection"
                    );
                    // Closing the channel wakes every connection task at once.
                    shutdown.take();
                }
                Some(DrainEffect::Done {
                    forced_connections,
                    forced_requests,
                }) => {
                    if forced_connections > 0 || forced_requests > 0 {
                        tracing::warn!(
                            forced_connections,
                            forced_requests,
                            "drain timeout: dropping the connections and requests still open"
                        );
                    }
                    let started = drain_started.unwrap_or_else(Instant::now);
                    return finish_drain(&gateway, connections.tasks, forced_connections, started);
                }
            }
        }
        let accept = async { Event::Accepted(listener.accept().await) };
        let finished = async { Event::Finished(connections.finished().await) };
        let drain_deadline = gateway.drain().poll_timeout();
        let drain = async {
            match drain_deadline {
                Some(deadline) => {
                    smol::Timer::at(gateway.instant_at(deadline)).await;
                    Event::DrainDeadline
                }
                None if drain_started.is_some() => std::future::pending().await,
                None => {
                    let _ = begin_drain.recv().await;
                    Event::Drain
                }
            }
        };
        let sample = async {
            smol::Timer::at(next_sample).await;
            Event::Sample
        };
        match accept.or(finished).or(drain).or(sample).await {
            Event::Accepted(Ok((stream, peer))) => {
                connections.spawn(&gateway, &acceptor, stream, peer, http::Surface::Main);
            }
            Event::Accepted(Err(error)) => {
                // Out of fds or similar: say so and back off briefly rather
                // than spin; the listener stays up.
                tracing::warn!(%error, "accept failed");
                smol::Timer::after(Duration::from_millis(50)).await;
            }
            Event::Finished(id) => {
                // The connection's slot (if it had one) told the drain
                // machine already; its effects are polled above.
                connections.remove(id);
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
                drain_started = Some(Instant::now());
                let now = gateway.now();
                gateway.drain().handle_shutdown(now);
            }
            Event::DrainDeadline => {
                let now = gateway.now();
                gateway.drain().handle_timeout(now);
            }
        }
    }
}

/// The admin listener (`admin.listen`): serves `/admin`, `/admin/state`,
/// `/metrics`, `/healthz` and `/readyz` (runtime-smol/src/http.rs,
/// `Surface::Admin`), at most `admin.max_connections` at once. Owns its
/// connection tasks; dropping it ends them all.
async fn serve_admin_listener(gateway: std::sync::Arc<Gateway>, listener: smol::net::TcpListener) {
    use futures_lite::FutureExt;
    let max = gateway.config.admin.max_connections;
    let plain = crate::tls::Acceptor::plain();
    let mut connections = ConnectionTasks::new();
    loop {
        let finished = async { Err(connections.finished().await) };
        let accept = async {
            if connections.tasks.len() >= max {
                // Full: wait for one to finish before accepting more.
                std::future::pending::<()>().await;
            }
            Ok(listener.accept().await)
        };
        match accept.or(finished).await {
            Err(id) => {
                connections.remove(id);
            }
            Ok(Ok((stream, peer))) => {
                connections.spawn(&gateway, &plain, stream, peer, http::Surface::Admin);
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "admin listener: accept failed");
                smol::Timer::after(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// The connection tasks of one listener, by id. A task sends its id on
/// `finished` when its connection ends; the accept loop then drops it
/// ([`ConnectionTasks::remove`]). Dropping the table ends every task.
struct ConnectionTasks {
    tasks: HashMap<u64, smol::Task<()>>,
    finished_tx: Sender<u64>,
    finished_rx: Receiver<u64>,
    last_id: u64,
}

impl ConnectionTasks {
    fn new() -> Self {
        // Unbounded, yet limited: at most one id per task in the table.
        let (finished_tx, finished_rx) = async_channel::unbounded();
        ConnectionTasks {
            tasks: HashMap::new(),
            finished_tx,
            finished_rx,
            last_id: 0,
        }
    }

    /// Serves the accepted `stream` on `surface` in a new task of the table.
    fn spawn(
        &mut self,
        gateway: &Arc<Gateway>,
        acceptor: &crate::tls::Acceptor,
        stream: TcpStream,
        peer: SocketAddr,
        surface: http::Surface,
    ) {
        self.last_id += 1;
        let id = self.last_id;
        self.tasks.insert(
            id,
            tasks::spawn(http::serve_tcp_on(
                gateway.clone(),
                acceptor.clone(),
                stream,
                peer,
                surface,
                (self.finished_tx.clone(), id),
            )),
        );
    }

    /// The id of the next task that finished (never, while none does).
    async fn finished(&self) -> u64 {
        match self.finished_rx.recv().await {
            Ok(id) => id,
            // The table holds a sender: the channel does not close.
            Err(_) => std::future::pending().await,
        }
    }

    /// Drops the finished task `id`.
    fn remove(&mut self, id: u64) {
        self.tasks.remove(&id);
    }
}

fn finish_drain(
    gateway: &Gateway,
    connections: HashMap<u64, smol::Task<()>>,
    forced_connections: usize,
    started: Instant,
) -> DrainReport {
    let leaked_operations = gateway.metrics.operations.load(Ordering::Relaxed);
    // Idle HTTP keep-alive connections and anything the deadline caught.
    drop(connections);
    let report = DrainReport {
        leaked_operations,
        forced_connections: i64::try_from(forced_connections).unwrap_or(i64::MAX),
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
