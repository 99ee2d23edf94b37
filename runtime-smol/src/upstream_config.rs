//! The bodies of `[grpc.<name>]` and `[mysql.<name>]` config sections.
//!
//! These mirror the interfaces of `terminus::grpc::GrpcUpstreamConfig` and
//! `terminus::mysql::MysqlDbConfig` (built on other branches) field for
//! field, so that configs parse and are checked before those clients land.
//! When they land, this module becomes a pair of re-exports.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// One gRPC upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcUpstreamConfig {
    /// `http://host:port` of the upstream.
    pub endpoint: String,
    /// The .proto files describing its services.
    #[serde(default)]
    pub protos: Vec<PathBuf>,
    /// Import paths for those .proto files.
    #[serde(default)]
    pub includes: Vec<PathBuf>,
    /// Deadline of one unary call.
    #[serde(default = "secs::<10>", with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Deadline of establishing the HTTP/2 connection.
    #[serde(default = "secs::<3>", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Streams open at once on the shared connection.
    #[serde(default = "default_streams")]
    pub max_concurrent_streams: usize,
    /// First reconnect delay.
    #[serde(default = "millis::<100>", with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    #[serde(default = "secs::<5>", with = "humantime_serde")]
    pub backoff_max: Duration,
}

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

fn millis<const N: u64>() -> Duration {
    Duration::from_millis(N)
}

fn default_streams() -> usize {
    1000
}

fn default_pool() -> usize {
    10
}
