//! `terminus-load`: a load generator for GraphQL-over-WebSocket servers,
//! built on smol and the core's client state machine
//! ([`terminus_core::client::ClientConnection`]).
//!
//! A run ramps connections (either subprotocol) at a given rate, subscribes
//! on each, holds, then ends every connection (abruptly or cleanly) and
//! polls the server's `/metrics` until the chosen series are back to their
//! baseline. It reports connect rate, delivered results per second,
//! lateness against the tick schedule, server RSS per connection and the
//! time to reclaim, as a table, JSON and an SVG chart. See
//! docs/BENCHMARKS.md for how the benchmarks use it.

pub mod cli;
pub mod client;
pub mod report;
pub mod run;
pub mod scrape;
pub mod stats;

pub use cli::Args;
pub use report::Report;
pub use run::run;
