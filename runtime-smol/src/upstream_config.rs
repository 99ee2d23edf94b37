//! The bodies of `[grpc.<name>]` and `[mysql.<name>]` config sections: the
//! upstream clients' own config types, so each client documents and checks
//! its own bounds.

pub use crate::grpc::GrpcUpstreamConfig;
pub use crate::mysql::MysqlDbConfig;
