//! Admission and graceful drain of a whole server, sans IO.
//!
//! One [`Drain`] per server. It admits WebSocket connections up to
//! `max_connections` and counts them until they end; on
//! [`Drain::handle_shutdown`] it stops admitting and asks, in this order,
//! for readiness to turn false ([`DrainEffect::ReadinessFalse`]) and for
//! every connection to be shut down ([`DrainEffect::ShutdownConnections`]:
//! each [`super::ServerConnection`] then closes with 1001 on its
//! `Shutdown` input). The drain is done ([`DrainEffect::Done`]) when the
//! last connection ended or when the deadline in [`Drain::poll_timeout`]
//! passed, whichever comes first; the connections still open then are
//! reported as forced.
//!
//! The host (runtime-smol `server.rs`) calls [`Drain::admit`] before it
//! upgrades a connection and [`Drain::handle_connection_closed`] when one
//! ends, and drains [`Drain::poll_effect`] after each input.

use crate::Millis;
use std::collections::VecDeque;
use std::time::Duration;

/// The bounds of a [`Drain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainConfig {
    /// Most WebSocket connections served at once.
    pub max_connections: usize,
    /// How long a drain waits for the connections to end before it is done
    /// anyway.
    pub timeout: Duration,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            max_connections: 10_000,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The answer to [`Drain::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Admitted: the connection is counted until
    /// [`Drain::handle_connection_closed`].
    Admitted,
    /// Refused: `max_connections` are open (HTTP 503 with `Retry-After`, the
    /// connection cap of docs/protocol.md).
    Full,
    /// Refused: the server is draining (HTTP 503; connect elsewhere).
    Draining,
}

/// What the host must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEffect {
    /// Report not ready (`/readyz` fails) so load balancers move traffic.
    /// Always the first effect of a drain.
    ReadinessFalse,
    /// Give every open connection its `Shutdown` input (close 1001).
    ShutdownConnections,
    /// The drain is over: stop serving.
    Done {
        /// Connections still open at the deadline (0 when all ended).
        forced_connections: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Serving,
    Draining { deadline: Millis },
    Done,
}

/// See the module docs.
#[derive(Debug)]
pub struct Drain {
    config: DrainConfig,
    connections: usize,
    state: State,
    effects: VecDeque<DrainEffect>,
}

impl Drain {
    /// A server that admits connections.
    pub fn new(config: DrainConfig) -> Self {
        Drain {
            config,
            connections: 0,
            state: State::Serving,
            effects: VecDeque::new(),
        }
    }

    /// Decides on a new connection.
    pub fn admit(&mut self, _now: Millis) -> Admission {
        if self.state != State::Serving {
            return Admission::Draining;
        }
        if self.connections >= self.config.max_connections {
            return Admission::Full;
        }
        self.connections += 1;
        Admission::Admitted
    }

    /// An admitted connection ended.
    pub fn handle_connection_closed(&mut self, _now: Millis) {
        self.connections = self.connections.saturating_sub(1);
        if matches!(self.state, State::Draining { .. }) && self.connections == 0 {
            self.finish();
        }
    }

    /// Begin the drain (a second call changes nothing).
    pub fn handle_shutdown(&mut self, now: Millis) {
        if self.state != State::Serving {
            return;
        }
        self.state = State::Draining {
            deadline: now + self.config.timeout,
        };
        self.effects.push_back(DrainEffect::ReadinessFalse);
        self.effects.push_back(DrainEffect::ShutdownConnections);
        if self.connections == 0 {
            self.finish();
        }
    }

    /// The timer armed at [`Self::poll_timeout`] fired (early is harmless).
    pub fn handle_timeout(&mut self, now: Millis) {
        if let State::Draining { deadline } = self.state {
            if deadline <= now {
                self.finish();
            }
        }
    }

    /// The next thing the host must do.
    pub fn poll_effect(&mut self) -> Option<DrainEffect> {
        self.effects.pop_front()
    }

    /// The drain's deadline while draining.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.state {
            State::Draining { deadline } => Some(deadline),
            State::Serving | State::Done => None,
        }
    }

    /// Whether the server should report ready: false from the start of a
    /// drain on.
    pub fn is_ready(&self) -> bool {
        self.state == State::Serving
    }

    /// Whether the drain has begun (or is done).
    pub fn is_draining(&self) -> bool {
        self.state != State::Serving
    }

    /// Whether the drain is over.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Admitted connections that have not ended.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// The bounds.
    pub fn config(&self) -> &DrainConfig {
        &self.config
    }

    fn finish(&mut self) {
        self.state = State::Done;
        self.effects.push_back(DrainEffect::Done {
            forced_connections: self.connections,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(max: usize, timeout_ms: u64) -> Drain {
        Drain::new(DrainConfig {
            max_connections: max,
            timeout: Duration::from_millis(timeout_ms),
        })
    }

    fn effects(d: &mut Drain) -> Vec<DrainEffect> {
        std::iter::from_fn(|| d.poll_effect()).collect()
    }

    #[test]
    fn admits_up_to_the_cap_and_counts_connections() {
        let mut d = drain(2, 1_000);
        let now = Millis(0);
        assert_eq!(d.admit(now), Admission::Admitted);
        assert_eq!(d.admit(now), Admission::Admitted);
        assert_eq!(d.admit(now), Admission::Full);
        assert_eq!(d.connections(), 2);
        d.handle_connection_closed(now);
        assert_eq!(d.admit(now), Admission::Admitted);
        assert!(d.is_ready());
        assert_eq!(d.poll_timeout(), None);
        assert!(effects(&mut d).is_empty());
    }

    #[test]
    fn readiness_goes_false_first_then_every_connection_is_shut_down() {
        let mut d = drain(10, 1_000);
        d.admit(Millis(0));
        d.admit(Millis(0));
        d.handle_shutdown(Millis(100));
        assert_eq!(
            effects(&mut d),
            [
                DrainEffect::ReadinessFalse,
                DrainEffect::ShutdownConnections
            ]
        );
        assert!(!d.is_ready());
        assert!(d.is_draining());
        assert_eq!(d.admit(Millis(100)), Admission::Draining);
        assert_eq!(d.poll_timeout(), Some(Millis(1_100)));
        // A second shutdown changes nothing.
        d.handle_shutdown(Millis(150));
        assert!(effects(&mut d).is_empty());
        d.handle_connection_closed(Millis(200));
        assert!(effects(&mut d).is_empty());
        d.handle_connection_closed(Millis(300));
        assert_eq!(
            effects(&mut d),
            [DrainEffect::Done {
                forced_connections: 0
            }]
        );
        assert!(d.is_done());
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn the_deadline_ends_the_drain_and_reports_the_forced_connections() {
        let mut d = drain(10, 500);
        d.admit(Millis(0));
        d.admit(Millis(0));
        d.admit(Millis(0));
        d.handle_shutdown(Millis(1_000));
        effects(&mut d);
        d.handle_connection_closed(Millis(1_100));
        d.handle_timeout(Millis(1_499));
        assert!(effects(&mut d).is_empty(), "early timer is harmless");
        d.handle_timeout(Millis(1_500));
        assert_eq!(
            effects(&mut d),
            [DrainEffect::Done {
                forced_connections: 2
            }]
        );
        // Connections dropped afterwards change nothing.
        d.handle_connection_closed(Millis(1_600));
        d.handle_timeout(Millis(9_999));
        assert!(effects(&mut d).is_empty());
        assert_eq!(d.admit(Millis(2_000)), Admission::Draining);
    }

    #[test]
    fn a_drain_with_no_connections_is_done_at_once() {
        let mut d = drain(10, 500);
        d.handle_shutdown(Millis(7));
        assert_eq!(
            effects(&mut d),
            [
                DrainEffect::ReadinessFalse,
                DrainEffect::ShutdownConnections,
                DrainEffect::Done {
                    forced_connections: 0
                }
            ]
        );
    }
}
