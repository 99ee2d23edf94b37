//! The bounds of one server connection.

use std::time::Duration;

/// Every bound of a [`super::ServerConnection`], with the defaults documented
/// in docs/protocol.md. A connection's memory is bounded by these, whatever
/// the client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// How long a client has to send `connection_init` and get it accepted
    /// (including the host's auth decision) before close 4408. Default 3 s.
    pub init_timeout: Duration,
    /// Period of transport-level (WebSocket) pings. Zero disables keep-alive.
    /// Default 15 s.
    pub keepalive_interval: Duration,
    /// A peer that sends nothing at all (no pong, no frame) for this long
    /// after a ping is closed with 1001 `Keep-alive timeout`. Default 10 s.
    pub keepalive_timeout: Duration,
    /// Period of legacy `ka` messages after the ack (one is always sent right
    /// after the ack). Zero disables the periodic ones. Default 15 s.
    pub legacy_ka_interval: Duration,
    /// Largest inbound frame, in bytes; a larger one closes with 1009.
    /// Default 64 KiB.
    pub max_frame_bytes: usize,
    /// Most live operations per connection (legacy: including starts queued
    /// behind a pending init); one more is answered with a GraphQL error for
    /// that operation alone. Default 100.
    pub max_operations: usize,
    /// Most bytes of `SendText` the host has not yet reported flushed; a
    /// frame that would exceed it closes the connection with 1013
    /// `Slow consumer` instead of being queued. Default 1 MiB.
    pub max_outbound_bytes: usize,
    /// After the connection sends `Close`, how long it waits for the peer's
    /// close frame before it ends anyway (the host then drops the socket).
    /// Default 1 s.
    pub close_linger: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            init_timeout: Duration::from_secs(3),
            keepalive_interval: Duration::from_secs(15),
            keepalive_timeout: Duration::from_secs(10),
            legacy_ka_interval: Duration::from_secs(15),
            max_frame_bytes: 64 * 1024,
            max_operations: 100,
            max_outbound_bytes: 1024 * 1024,
            close_linger: Duration::from_secs(1),
        }
    }
}
