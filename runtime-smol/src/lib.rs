//! The smol runtime adapter of the Terminus gateway.

pub mod demo_upstream;
pub mod grpc;
pub mod mysql;
pub mod tasks;
