//! `terminus-core`: the sans-IO heart of the Terminus gateway.
//!
//! Everything here is a pure state machine in the style of quinn-proto and
//! str0m: inputs go in through `handle_*(now, ...)` methods, outputs come out
//! of `poll_*()` methods, and time is data supplied by the caller. Nothing in
//! this crate reads a clock, opens a socket, spawns a thread or awaits.
//!
//! The cargo feature `testkit` adds `ledger` (the auditor of the lifecycle
//! rules) and `sim` (the deterministic simulator): tests, the fuzz targets
//! and the wasm simulator enable it; the gateway binary does not.

pub mod client;
pub mod demo_service;
pub mod graphql;
#[cfg(feature = "testkit")]
pub mod ledger;
pub mod operation;
pub mod protocol;
pub mod server;
pub mod share;
#[cfg(feature = "testkit")]
pub mod sim;
pub mod time;
pub mod upstream;

pub use operation::{EncodedPayload, OpId, OperationRequest, UpstreamEvent};
pub use time::Millis;
pub use upstream::{CallTimeouts, FailureKind, RequestContext, UpstreamCall, UpstreamFailure};
