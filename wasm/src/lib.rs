//! The Terminus core compiled to wasm for the browser simulator.
//!
//! Two modes, both driving the core's state machines unchanged:
//! - [`offline`]: N simulated clients against N simulated server
//!   connections and the real GraphQL engine on a virtual clock, with
//!   faults, every step audited by the core's ledgers;
//! - [`live`]: M browser WebSockets, each driven by the core's
//!   `ClientConnection`, against a running gateway.
//!
//! [`bindings`] is what the page (`wasm/www/app.js`) calls.

pub mod bindings;
pub mod live;
pub mod offline;
pub mod upstream;
