//! The smol runtime adapter of the Terminus gateway.

pub mod demo_upstream;
pub mod grpc;
pub mod mysql;
pub mod tasks;

// server (issue 4)
pub mod admin;
pub mod cli;
pub mod config;
pub mod events;
pub mod execute;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod reload;
pub mod request;
pub mod run;
pub mod server;
pub mod share;
pub mod streaming;
pub mod timeout;
pub mod upstream_config;
pub mod upstreams;
pub mod ws;

// security (issue 14): TLS on every hop, JWT auth
pub mod jwt;
pub mod tls;

// browser simulator (issue 7): static files for /simulator
pub mod simulator;
