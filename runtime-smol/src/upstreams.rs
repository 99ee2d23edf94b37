//! The upstream clients of one gateway, created once at start-up from the
//! config and shared by every operation (never one per request).

use crate::config::Config;
use crate::execute::unavailable;
use crate::grpc::GrpcUpstream;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use terminus_core::UpstreamFailure;

/// Every configured upstream by the name the schema uses.
#[derive(Debug, Default)]
pub struct Upstreams {
    grpc: BTreeMap<String, Arc<GrpcUpstream>>,
}

impl Upstreams {
    /// Builds the clients the config names. gRPC .proto files are compiled
    /// here, so a bad one stops start-up with its file and line.
    pub fn from_config(config: &Config) -> Result<Upstreams, String> {
        let mut upstreams = Upstreams::default();
        for (name, upstream) in &config.grpc {
            let client = GrpcUpstream::new(name, upstream).map_err(|e| e.to_string())?;
            upstreams.grpc.insert(name.clone(), client);
        }
        if let Some(name) = config.mysql.keys().next() {
            return Err(format!(
                "mysql.{name}: this build of terminus has no MySQL client yet"
            ));
        }
        Ok(upstreams)
    }

    /// Adds (or replaces) the gRPC upstream `name`.
    pub fn insert_grpc(&mut self, name: &str, client: Arc<GrpcUpstream>) {
        self.grpc.insert(name.to_owned(), client);
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
        std::iter::empty()
    }

    /// Runs one SQL statement on database `db`: rows as an array of row
    /// objects when `returns_rows`, else `{"affectedRows", "lastInsertId"}`.
    pub async fn sql(
        &self,
        db: &str,
        _statement: &str,
        _params: &[Value],
        _returns_rows: bool,
    ) -> Result<Value, UpstreamFailure> {
        Err(unavailable("MySQL database", db))
    }

    /// Open gRPC streams over all upstreams.
    pub fn open_streams(&self) -> usize {
        self.grpc.values().map(|g| g.open_streams()).sum()
    }

    /// Open upstream TCP connections over all upstreams.
    pub fn open_connections(&self) -> usize {
        self.grpc.values().map(|g| g.open_connections()).sum()
    }
}
