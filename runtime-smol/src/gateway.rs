//! The state every part of the gateway shares: the [`Gateway`] (config,
//! schema, upstreams, metrics, the core's clock), admission and drain (the
//! core's [`Drain`] machine and the [`ConnectionSlot`] each WebSocket holds),
//! and what `/admin` may see of the live connections and their operations
//! ([`ConnectionView`], [`OperationRow`]).
//!
//! This module is imported by the others (server.rs, http.rs, ws.rs,
//! execute.rs, admin.rs) and imports none of them: docs/architecture.md.

use crate::config::Config;
use crate::grpc::metadata::ContextCapture;
use crate::jwt::Verifier;
use crate::metrics::{History, Metrics, Sampled};
use crate::upstreams::Upstreams;
use async_channel::Receiver;
use event_listener::Event;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use terminus_core::graphql::persisted::PersistedQueries;
use terminus_core::graphql::{Limits as GraphqlLimits, Schema, UpstreamNames};
use terminus_core::server::{Admission, ConnectionConfig, Drain, DrainConfig};
use terminus_core::Millis;

/// One live operation as the `/admin` page lists it: the core's view of it
/// (`ServerConnection::operations`) and the root fields of its prepared
/// operation.
#[derive(Debug, Clone)]
pub struct OperationRow {
    /// The client's id for the operation.
    pub id: String,
    /// The root fields it selects (response keys, as core's
    /// `PreparedOperation::root_keys` gives them).
    pub field: String,
    /// When its `Start` was emitted, on the core's clock ([`Gateway::now`]).
    pub started: Millis,
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
    /// Its live operations, published by the connection task whenever its
    /// state machine's set of live operations changes.
    pub operations: Mutex<Vec<OperationRow>>,
}

/// What a hot reload replaces (runtime-smol/src/reload.rs): the schema, the
/// upstream sections of the config and the clients built from them. Each
/// operation takes the current one when it starts and keeps it to its end.
#[derive(Debug)]
pub struct Live {
    /// The configuration this schema and these upstreams were loaded from
    /// (only its `schema`, `[grpc.*]` and `[mysql.*]` are reloaded; the rest
    /// of the running gateway follows [`Gateway::config`]).
    pub config: Config,
    /// The loaded schema.
    pub schema: Schema,
    /// The upstream clients.
    pub upstreams: Arc<Upstreams>,
    /// The names of `upstreams`, for the core's reload rule.
    pub upstream_names: UpstreamNames,
    /// The request values some upstream forwards as metadata, collected by
    /// the front ends (grpc/metadata.rs).
    pub context_capture: ContextCapture,
    /// 0 at start, one more per successful reload.
    pub generation: u64,
}

impl Live {
    /// The live part of a gateway serving `schema` against `upstreams`.
    pub fn new(config: Config, schema: Schema, upstreams: Upstreams, generation: u64) -> Live {
        let context_capture = ContextCapture::from_keys(
            upstreams
                .grpc_names()
                .filter_map(|name| upstreams.grpc(name))
                .flat_map(|upstream| upstream.context_keys()),
        );
        let upstream_names = UpstreamNames {
            grpc: upstreams.grpc_names().map(str::to_owned).collect(),
            sql: upstreams.sql_names().map(str::to_owned).collect(),
        };
        Live {
            config,
            schema,
            upstreams: Arc::new(upstreams),
            upstream_names,
            context_capture,
            generation,
        }
    }
}

/// The outcome of the last reload, for `/admin/state` and the log.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// Successful reloads since start.
    pub ok_total: u64,
    /// Failed reloads since start (nothing changed).
    pub failed_total: u64,
    /// The last reload's outcome: `Ok(summary)` or `Err(why, with file and
    /// line)`; `None` before the first.
    pub last: Option<Result<String, String>>,
}

/// State shared by the listener, every connection and every HTTP request.
pub struct Gateway {
    /// The configuration the gateway started with (the sections a reload
    /// does not change: listen, TLS, auth, admin, limits, timeouts).
    pub config: Config,
    /// The schema and upstreams, replaced whole by a reload.
    live: RwLock<Arc<Live>>,
    /// Notified after each successful reload; live operations then ask the
    /// core whether they keep running (runtime-smol/src/execute.rs).
    pub(crate) reloaded: Event,
    /// The last reload's outcome.
    pub reload_status: Mutex<ReloadStatus>,
    /// The config file `terminus serve` was started with (a reload reads
    /// it again); `None` for the demo, which builds its config in code.
    pub config_path: Mutex<Option<PathBuf>>,
    /// Serializes reloads (SIGHUP and `POST /admin/reload`).
    pub(crate) reloading: async_lock::Mutex<()>,
    /// GraphQL bounds derived from `config.limits`.
    pub graphql_limits: GraphqlLimits,
    /// The JWT verifier when `[auth.jwt]` is configured (runtime-smol/src/jwt.rs).
    pub jwt: Option<Arc<Verifier>>,
    /// Counters and gauges.
    pub metrics: Metrics,
    /// The `/admin` chart's history.
    pub history: History,
    /// Persisted queries (APQ cache, trusted-documents manifest): every
    /// transport resolves through it (`request::start_execution`).
    pub persisted: Mutex<PersistedQueries>,
    /// Admission and drain: the core's machine (connection cap, readiness,
    /// the drain's deadline and its end).
    drain: Mutex<Drain>,
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
    /// The shared state of a gateway serving `schema` against `upstreams`
    /// (with `jwt` verifying inits when configured); connection tasks see
    /// the drain begin when `shutdown`'s sender is dropped.
    pub fn new(
        config: Config,
        schema: Schema,
        upstreams: Upstreams,
        jwt: Option<Arc<Verifier>>,
        shutdown: Receiver<()>,
    ) -> Gateway {
        let history_len = config.admin.history.as_secs().max(1) as usize;
        let graphql_limits = GraphqlLimits {
            max_depth: config.limits.max_query_depth,
            max_fields: config.limits.max_query_fields,
            max_aliases: config.limits.max_query_aliases,
            max_query_bytes: config.limits.max_query_bytes,
            max_cost: config.limits.max_query_cost,
            list_cost: config.limits.query_list_cost,
            max_schema_fields: config.limits.max_query_schema_fields,
            max_response_bytes: config.limits.max_response_bytes,
            max_sql_row_count: config.limits.max_sql_row_count,
        };
        let drain = Drain::new(DrainConfig {
            max_connections: config.limits.max_connections,
            timeout: config.timeouts.drain,
            unready_delay: config.timeouts.drain_unready,
            unready_at_capacity: config.limits.unready_at_capacity,
        });
        let persisted = Mutex::new(PersistedQueries::new(
            config.persisted_queries.core(),
            config.persisted_queries.loaded.clone(),
        ));
        let live = Live::new(config.clone(), schema, upstreams, 0);
        Gateway {
            config,
            live: RwLock::new(Arc::new(live)),
            reloaded: Event::new(),
            reload_status: Mutex::new(ReloadStatus::default()),
            config_path: Mutex::new(None),
            reloading: async_lock::Mutex::new(()),
            graphql_limits,
            jwt,
            metrics: Metrics::default(),
            history: History::new(history_len),
            persisted,
            drain: Mutex::new(drain),
            shutdown,
            admin_addr: Mutex::new(None),
            views: Mutex::new(BTreeMap::new()),
            next_connection: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    /// The current schema and upstreams (an operation takes them once, when
    /// it starts).
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the schema and upstreams and wakes every live operation
    /// (runtime-smol/src/reload.rs decides what `live` is).
    pub(crate) fn swap_live(&self, live: Live) {
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(live);
        self.reloaded.notify(usize::MAX);
    }

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
            close_linger: c.timeouts.close_linger,
        }
    }

    /// Values read from their owners, for `/metrics` and `/admin`.
    pub fn sampled(&self) -> Sampled {
        let live = self.live();
        let (shared_streams, shared_subscribers) = live.upstreams.shared().counts();
        Sampled {
            shared_streams,
            shared_subscribers,
            shared_skipped_total: live.upstreams.shared().skipped_total(),
            ..Sampled::process(
                self.open_connections(),
                live.upstreams.open_streams(),
                live.upstreams.open_connections(),
            )
        }
    }

    /// The capacity, readiness and reload series of `/metrics`.
    pub fn capacity(&self) -> crate::metrics::Capacity {
        let status = self
            .reload_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let drain = self.drain();
        crate::metrics::Capacity {
            max_connections: drain.config().max_connections,
            ready: drain.is_ready(),
            draining: drain.is_draining(),
            config_generation: self.live().generation,
            reloads_ok: status.ok_total,
            reloads_failed: status.failed_total,
        }
    }

    /// `/readyz`: false from the moment a drain begins, and at the
    /// connection cap when `limits.unready_at_capacity`.
    pub fn is_ready(&self) -> bool {
        self.drain().is_ready()
    }

    /// Whether a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.drain().is_draining()
    }

    /// Admitted WebSocket connections that have not ended.
    pub fn open_connections(&self) -> usize {
        self.drain().connections()
    }

    /// The admission and drain machine (server.rs drives it).
    pub(crate) fn drain(&self) -> MutexGuard<'_, Drain> {
        self.drain.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// One admitted WebSocket connection, held for the connection's whole
/// life: dropping it tells the drain machine the connection ended.
#[derive(Debug)]
pub struct ConnectionSlot {
    gateway: Arc<Gateway>,
}

impl ConnectionSlot {
    /// Asks the drain machine to admit one more connection; the refusal
    /// says why (the cap, or a drain under way).
    pub fn admit(gateway: &Arc<Gateway>) -> Result<ConnectionSlot, Admission> {
        match gateway.drain().admit(gateway.now()) {
            Admission::Admitted => Ok(ConnectionSlot {
                gateway: gateway.clone(),
            }),
            refused => Err(refused),
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let now = self.gateway.now();
        self.gateway.drain().handle_connection_closed(now);
    }
}

/// One HTTP request that runs an operation (POST `/graphql`), held while it
/// runs: a drain waits for it to be answered (core `Drain`).
#[derive(Debug)]
pub struct RequestSlot {
    gateway: Arc<Gateway>,
}

impl RequestSlot {
    /// Counts a request in flight until the slot is dropped.
    pub fn new(gateway: &Arc<Gateway>) -> RequestSlot {
        let now = gateway.now();
        gateway.drain().handle_request_started(now);
        RequestSlot {
            gateway: gateway.clone(),
        }
    }
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        let now = self.gateway.now();
        self.gateway.drain().handle_request_ended(now);
    }
}
