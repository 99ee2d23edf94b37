//! The bodies of `[grpc.<name>]` and `[mysql.<name>]` config sections.
//!
//! `[grpc.<name>]` is `terminus::grpc::GrpcUpstreamConfig`. `[mysql.<name>]`
//! mirrors the interface of `terminus::mysql::MysqlDbConfig` (built on
//! another branch) field for field, so that configs parse and are checked
//! before that client lands; then it becomes a re-export too.

use serde::Deserialize;
use std::time::Duration;

pub use crate::grpc::GrpcUpstreamConfig;

/// One MySQL database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlDbConfig {
    /// `mysql://user:password@host:port/database`.
    pub url: String,
    /// Pool size.
    #[serde(default = "default_pool")]
    pub max_connections: usize,
    /// Waiting for a pooled connection.
    #[serde(default = "secs::<2>", with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Idle pooled connections are closed after this.
    #[serde(default = "secs::<300>", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// One statement.
    #[serde(default = "secs::<10>", with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Opening a connection.
    #[serde(default = "secs::<3>", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Period of idle connection checks.
    #[serde(default = "secs::<30>", with = "humantime_serde")]
    pub health_check_interval: Duration,
}

fn secs<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

fn default_pool() -> usize {
    10
}
