//! The smol runtime adapter of the Terminus gateway.

pub mod demo_upstream;
pub mod grpc;
pub mod mysql;
pub mod tasks;

// browser simulator (issue 7): static files for /simulator
pub mod simulator;
