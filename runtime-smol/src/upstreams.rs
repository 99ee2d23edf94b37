//! The upstream clients of one gateway, created once at start-up from the
//! config and shared by every operation (never one per request).

use crate::config::Config;
use crate::grpc::GrpcUpstream;
use crate::mysql::{LiveRows, MysqlPool, PoolStats};
use crate::share::ShareHub;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use terminus_core::graphql::Schema;
use terminus_core::{FailureKind, UpstreamFailure};

/// Every configured upstream by the name the schema uses.
#[derive(Debug, Default)]
pub struct Upstreams {
    grpc: BTreeMap<String, Arc<GrpcUpstream>>,
    mysql: BTreeMap<String, Arc<MysqlPool>>,
    /// The `@shared` streams (runtime-smol/src/share.rs).
    shared: ShareHub,
}

impl Upstreams {
    /// Builds the clients the config names. gRPC .proto files are compiled
    /// here, so a bad one stops start-up with its file and line.
    pub fn from_config(config: &Config) -> Result<Upstreams, String> {
        let mut upstreams = Upstreams::default();
        // `[auth.jwt] claims_metadata` goes to every gRPC upstream as
        // `claim:<name>` context keys (grpc/metadata.rs); an upstream's own
        // `forward_context` entry for the same claim takes precedence.
        let claims_metadata = config
            .auth
            .jwt
            .as_ref()
            .map(|jwt| &jwt.claims_metadata)
            .filter(|table| !table.is_empty());
        for (name, upstream) in &config.grpc {
            let client = match claims_metadata {
                None => GrpcUpstream::new(name, upstream),
                Some(table) => {
                    let mut upstream = upstream.clone();
                    for (claim, header) in table {
                        upstream
                            .forward_context
                            .entry(format!("claim:{claim}"))
                            .or_insert_with(|| header.clone());
                    }
                    GrpcUpstream::new(name, &upstream)
                }
            }
            .map_err(|e| e.to_string())?;
            upstreams.grpc.insert(name.clone(), client);
        }
        for (name, db) in &config.mysql {
            let db = with_listener_defaults(db, config.listen);
            let pool = MysqlPool::new(name, &db).map_err(|e| format!("mysql.{name}: {e}"))?;
            upstreams.mysql.insert(name.clone(), pool);
        }
        Ok(upstreams)
    }

    /// A reload: takes `old`'s client for every upstream whose section is
    /// the same in `config` as in `old_config` (its connections and streams
    /// go on), and keeps the new client for the others. Returns the names
    /// kept and the names of the new or changed ones; `old`'s replaced
    /// clients drain as the operations that hold them end.
    pub fn keep_unchanged(
        &mut self,
        config: &Config,
        old_config: &Config,
        old: &Upstreams,
    ) -> (Vec<String>, Vec<String>) {
        let (mut kept, mut changed) = (Vec::new(), Vec::new());
        for (name, client) in &mut self.grpc {
            match (old_config.grpc.get(name), old.grpc.get(name)) {
                (Some(before), Some(old_client)) if config.grpc.get(name) == Some(before) => {
                    *client = old_client.clone();
                    kept.push(format!("grpc.{name}"));
                }
                _ => changed.push(format!("grpc.{name}")),
            }
        }
        for (name, pool) in &mut self.mysql {
            match (old_config.mysql.get(name), old.mysql.get(name)) {
                (Some(before), Some(old_pool)) if config.mysql.get(name) == Some(before) => {
                    *pool = old_pool.clone();
                    kept.push(format!("mysql.{name}"));
                }
                _ => changed.push(format!("mysql.{name}")),
            }
        }
        (kept, changed)
    }

    /// Adds (or replaces) the gRPC upstream `name`.
    pub fn insert_grpc(&mut self, name: &str, client: Arc<GrpcUpstream>) {
        self.grpc.insert(name.to_owned(), client);
    }

    /// Adds (or replaces) the database `name`.
    pub fn insert_mysql(&mut self, name: &str, pool: Arc<MysqlPool>) {
        self.mysql.insert(name.to_owned(), pool);
    }

    /// The database `name`, if configured.
    pub fn mysql(&self, name: &str) -> Option<&Arc<MysqlPool>> {
        self.mysql.get(name)
    }

    /// Bounds each `@shared` subscriber's queue to
    /// `limits.shared_subscriber_queue` items, with `limits.shared_lag` for
    /// a subscriber that lags; done by the server at start-up, before any
    /// operation runs.
    pub fn set_shared(&mut self, limits: &crate::config::Limits) {
        self.shared = ShareHub::new(limits.shared_subscriber_queue, limits.shared_lag);
    }

    /// [`Upstreams::set_shared`] for a hot reload: the new hub keeps
    /// `previous`'s `terminus_shared_skipped_total` growing.
    pub fn set_shared_after(&mut self, previous: &ShareHub, limits: &crate::config::Limits) {
        self.shared = ShareHub::after(previous, limits.shared_subscriber_queue, limits.shared_lag);
    }

    /// The hub of the `@shared` streams.
    pub fn shared(&self) -> &ShareHub {
        &self.shared
    }

    /// The gRPC upstream `name`, if configured.
    pub fn grpc(&self, name: &str) -> Option<&Arc<GrpcUpstream>> {
        self.grpc.get(name)
    }

    /// Names of the configured gRPC upstreams.
    pub fn grpc_names(&self) -> impl Iterator<Item = &str> {
        self.grpc.keys().map(String::as_str)
    }

    /// Names of the configured databases.
    pub fn sql_names(&self) -> impl Iterator<Item = &str> {
        self.mysql.keys().map(String::as_str)
    }

    /// Runs one SQL statement on database `db`: rows as an array of row
    /// objects when `returns_rows`, else `{"affectedRows", "lastInsertId"}`.
    /// Dropping the future while the statement runs kills it.
    pub async fn sql(
        &self,
        db: &str,
        statement: &str,
        params: &[Value],
        returns_rows: bool,
    ) -> Result<Value, UpstreamFailure> {
        let Some(pool) = self.mysql.get(db) else {
            return Err(unavailable("MySQL database", db));
        };
        if returns_rows {
            pool.query(statement, params).await
        } else {
            pool.execute(statement, params).await
        }
    }

    /// Subscribes to `statement` polled every `every` on database `db`;
    /// identical subscriptions share one poll.
    pub fn live_sql(
        &self,
        db: &str,
        statement: &str,
        params: &[Value],
        every: Duration,
    ) -> Result<LiveRows, UpstreamFailure> {
        let pool = self
            .mysql
            .get(db)
            .ok_or_else(|| unavailable("MySQL database", db))?;
        Ok(pool.live(statement, params, every))
    }

    /// The start-up check of `schema`'s SQL fields against the columns of
    /// their statements (`core/src/graphql/columns.rs`): each statement is
    /// prepared, not run, on its pool; a field that maps to no column, or a
    /// statement the server refuses, stops start-up with the schema file's
    /// name (`file`). A database that cannot be reached at start-up is not
    /// checked (logged), so the gateway still starts while it is down.
    pub async fn check_columns(&self, schema: &Schema, file: &Path) -> Result<(), String> {
        for check in schema.column_checks() {
            let Some(pool) = self.mysql(&check.db) else {
                continue;
            };
            match pool.columns(&check.statement).await {
                Ok(columns) => schema
                    .check_columns(&check, &columns)
                    .map_err(|e| format!("{}: {e}", file.display()))?,
                Err(failure)
                    if matches!(
                        failure.kind,
                        FailureKind::Unavailable | FailureKind::Busy | FailureKind::Timeout
                    ) =>
                {
                    tracing::warn!(field = %check.field, %failure, "cannot check the field's columns at start-up");
                }
                Err(failure) => {
                    return Err(format!(
                        "{}: field {}: the statement does not prepare: {}",
                        file.display(),
                        check.field,
                        failure.message
                    ))
                }
            }
        }
        Ok(())
    }

    /// Every pool's stats by database name, for `/metrics` and `/admin`.
    pub fn mysql_stats(&self) -> Vec<(&str, PoolStats)> {
        self.mysql
            .iter()
            .map(|(name, pool)| (name.as_str(), pool.stats()))
            .collect()
    }

    /// The upstreams' own series (`terminus_grpc_*`, `terminus_mysql_*`)
    /// for `/metrics`.
    pub fn write_prometheus(&self, out: &mut String) {
        let grpc: Vec<_> = self
            .grpc
            .iter()
            .map(|(name, upstream)| (name.as_str(), upstream.pool_stats()))
            .collect();
        crate::grpc::write_prometheus(&grpc, out);
        let stats = self.mysql_stats();
        if !stats.is_empty() {
            crate::mysql::write_prometheus(&stats, out);
        }
    }

    /// Open gRPC streams over all upstreams.
    pub fn open_streams(&self) -> usize {
        self.grpc.values().map(|g| g.open_streams()).sum()
    }

    /// Open upstream TCP connections over all upstreams: gRPC connections
    /// and pooled MySQL connections (idle and lent out).
    pub fn open_connections(&self) -> usize {
        let grpc: usize = self.grpc.values().map(|g| g.open_connections()).sum();
        let mysql: usize = self
            .mysql
            .values()
            .map(|p| {
                let stats = p.stats();
                stats.idle + stats.busy
            })
            .sum();
        grpc + mysql
    }
}

/// The failure for a call to an upstream the config does not name.
pub(crate) fn unavailable(what: &str, name: &str) -> UpstreamFailure {
    UpstreamFailure::new(
        FailureKind::Unavailable,
        format!("no {what} named {name:?} is configured"),
    )
}

/// `db` with the defaults that depend on the gateway's listener: server
/// error texts (they name tables and keys) are hidden unless the gateway
/// listens on loopback only, or `hide_server_messages` says otherwise.
pub fn with_listener_defaults(
    db: &crate::mysql::MysqlDbConfig,
    listen: std::net::SocketAddr,
) -> crate::mysql::MysqlDbConfig {
    let mut db = db.clone();
    db.hide_server_messages = Some(
        db.hide_server_messages
            .unwrap_or(!listen.ip().is_loopback()),
    );
    db
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::MysqlDbConfig;
    use std::net::SocketAddr;

    #[test]
    fn mysql_server_messages_are_hidden_by_default_off_loopback() {
        let db = MysqlDbConfig::new("mysql://root@127.0.0.1:3306/test");
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            with_listener_defaults(&db, public).hide_server_messages,
            Some(true)
        );
        assert_eq!(
            with_listener_defaults(&db, loopback).hide_server_messages,
            Some(false)
        );
        let shown = MysqlDbConfig {
            hide_server_messages: Some(false),
            ..db.clone()
        };
        assert_eq!(
            with_listener_defaults(&shown, public).hide_server_messages,
            Some(false)
        );
        let mut config = Config::with_schema("s.graphql".into());
        config.listen = public;
        config.mysql.insert("main".into(), db);
        let upstreams = Upstreams::from_config(&config).unwrap();
        assert!(upstreams.mysql("main").unwrap().hides_server_messages());
    }
}
