//! Admission and graceful drain of a whole server, sans IO.
//!
//! One [`Drain`] per server. It admits WebSocket connections up to
//! `max_connections` and counts them until they end; on
//! [`Drain::handle_shutdown`] it stops admitting and asks, in this order,
//! for readiness to turn false ([`DrainEffect::ReadinessFalse`], at once)
//! and, `unready_delay` later (so a load balancer's health check sees the
//! instance go away before its connections do), for every connection to be
//! shut down ([`DrainEffect::ShutdownConnections`]: each
//! [`super::ServerConnection`] then closes with 1001 on its `Shutdown`
//! input). The drain is done ([`DrainEffect::Done`]) when the last
//! connection and the last HTTP request in flight
//! ([`Drain::handle_request_started`]: a POST is answered, not cut) ended
//! after the shutdown, or when `timeout` has passed since the shutdown,
//! whichever comes first; the connections and requests still open then
//! are reported as forced.
//!
//! Readiness is also the capacity signal: with `unready_at_capacity`, a
//! server holding `max_connections` reports not ready
//! ([`Drain::is_ready`]) until one ends, so a balancer sends the next
//! client to a sibling.
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
    /// How long a drain waits, once the connections were told to shut
    /// down, for them to end before it is done anyway.
    pub timeout: Duration,
    /// How long readiness is false before the connections are told to shut
    /// down (the balancer's health-check interval times its fall count).
    /// New connections are refused during it; open ones keep working.
    pub unready_delay: Duration,
    /// Whether a server at `max_connections` reports not ready.
    pub unready_at_capacity: bool,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            max_connections: 10_000,
            timeout: Duration::from_secs(10),
            unready_delay: Duration::ZERO,
            unready_at_capacity: true,
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
    /// Always the first effect of a drain; `unready_delay` before the next.
    ReadinessFalse,
    /// Give every open connection its `Shutdown` input (close 1001).
    ShutdownConnections,
    /// The drain is over: stop serving.
    Done {
        /// Connections still open at the deadline (0 when all ended).
        forced_connections: usize,
        /// HTTP requests still in flight at the deadline (0 when all were
        /// answered).
        forced_requests: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Serving,
    /// Readiness is false; the connections are shut down at `until`.
    Unready {
        until: Millis,
    },
    Draining {
        deadline: Millis,
    },
    Done,
}

/// See the module docs.
#[derive(Debug)]
pub struct Drain {
    config: DrainConfig,
    connections: usize,
    requests: usize,
    state: State,
    effects: VecDeque<DrainEffect>,
}

impl Drain {
    /// A server that admits connections.
    pub fn new(config: DrainConfig) -> Self {
        Drain {
            config,
            connections: 0,
            requests: 0,
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
        self.finish_if_idle();
    }

    /// An HTTP request that runs an operation began (accepted during a
    /// drain too: the balancer may still send one while readiness is false).
    pub fn handle_request_started(&mut self, _now: Millis) {
        self.requests += 1;
    }

    /// An HTTP request counted by [`Self::handle_request_started`] ended.
    pub fn handle_request_ended(&mut self, _now: Millis) {
        self.requests = self.requests.saturating_sub(1);
        self.finish_if_idle();
    }

    fn finish_if_idle(&mut self) {
        if matches!(self.state, State::Draining { .. })
            && self.connections == 0
            && self.requests == 0
        {
            self.finish();
        }
    }

    /// Begin the drain (a second call changes nothing).
    pub fn handle_shutdown(&mut self, now: Millis) {
        if self.state != State::Serving {
            return;
        }
        self.effects.push_back(DrainEffect::ReadinessFalse);
        if self.config.unready_delay.is_zero() {
            self.shut_down_connections(now);
        } else {
            self.state = State::Unready {
                until: now + self.config.unready_delay,
            };
        }
    }

    /// The timer armed at [`Self::poll_timeout`] fired (early is harmless).
    pub fn handle_timeout(&mut self, now: Millis) {
        match self.state {
            State::Unready { until } if until <= now => self.shut_down_connections(now),
            State::Draining { deadline } if deadline <= now => self.finish(),
            _ => {}
        }
    }

    fn shut_down_connections(&mut self, now: Millis) {
        self.state = State::Draining {
            deadline: now + self.config.timeout,
        };
        self.effects.push_back(DrainEffect::ShutdownConnections);
        self.finish_if_idle();
    }

    /// The next thing the host must do.
    pub fn poll_effect(&mut self) -> Option<DrainEffect> {
        self.effects.pop_front()
    }

    /// When the drain's next step is due: the end of `unready_delay`, then
    /// the drain's deadline.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.state {
            State::Unready { until } => Some(until),
            State::Draining { deadline } => Some(deadline),
            State::Serving | State::Done => None,
        }
    }

    /// Whether the server should report ready: false from the start of a
    /// drain on, and (with `unready_at_capacity`) while `max_connections`
    /// are open.
    pub fn is_ready(&self) -> bool {
        self.state == State::Serving
            && !(self.config.unready_at_capacity && self.connections >= self.config.max_connections)
    }

    /// Whether the server holds `max_connections`.
    pub fn is_full(&self) -> bool {
        self.connections >= self.config.max_connections
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

    /// HTTP requests in flight.
    pub fn requests(&self) -> usize {
        self.requests
    }

    /// The bounds.
    pub fn config(&self) -> &DrainConfig {
        &self.config
    }

    fn finish(&mut self) {
        self.state = State::Done;
        self.effects.push_back(DrainEffect::Done {
            forced_connections: self.connections,
            forced_requests: self.requests,
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
            unready_delay: Duration::ZERO,
            unready_at_capacity: true,
        })
    }

    #[test]
    fn at_the_cap_readiness_is_false_unless_configured_otherwise() {
        let mut d = drain(2, 1_000);
        d.admit(Millis(0));
        assert!(d.is_ready());
        d.admit(Millis(0));
        assert!(d.is_full());
        assert!(!d.is_ready(), "full: the balancer should pick a sibling");
        d.handle_connection_closed(Millis(1));
        assert!(d.is_ready());
        let mut d = Drain::new(DrainConfig {
            max_connections: 1,
            unready_at_capacity: false,
            ..DrainConfig::default()
        });
        d.admit(Millis(0));
        assert!(d.is_full());
        assert!(d.is_ready());
    }

    #[test]
    fn readiness_is_false_for_the_unready_delay_before_connections_are_shut_down() {
        let mut d = Drain::new(DrainConfig {
            max_connections: 10,
            timeout: Duration::from_millis(1_000),
            unready_delay: Duration::from_millis(300),
            unready_at_capacity: true,
        });
        d.admit(Millis(0));
        d.handle_shutdown(Millis(100));
        assert_eq!(effects(&mut d), [DrainEffect::ReadinessFalse]);
        assert!(!d.is_ready());
        assert!(d.is_draining());
        assert_eq!(d.admit(Millis(150)), Admission::Draining);
        assert_eq!(d.poll_timeout(), Some(Millis(400)));
        d.handle_timeout(Millis(399));
        assert!(effects(&mut d).is_empty(), "early timer is harmless");
        d.handle_timeout(Millis(400));
        assert_eq!(effects(&mut d), [DrainEffect::ShutdownConnections]);
        // The drain bound counts from the shutdown of the connections.
        assert_eq!(d.poll_timeout(), Some(Millis(1_400)));
        d.handle_connection_closed(Millis(500));
        assert_eq!(
            effects(&mut d),
            [DrainEffect::Done {
                forced_connections: 0,
                forced_requests: 0,
            }]
        );
    }

    #[test]
    fn a_connection_ending_during_the_unready_delay_does_not_end_it_early() {
        let mut d = Drain::new(DrainConfig {
            max_connections: 10,
            timeout: Duration::from_millis(1_000),
            unready_delay: Duration::from_millis(300),
            unready_at_capacity: true,
        });
        d.admit(Millis(0));
        d.handle_shutdown(Millis(0));
        effects(&mut d);
        d.handle_connection_closed(Millis(10));
        assert!(effects(&mut d).is_empty());
        assert!(!d.is_done());
        d.handle_timeout(Millis(300));
        assert_eq!(
            effects(&mut d),
            [
                DrainEffect::ShutdownConnections,
                DrainEffect::Done {
                    forced_connections: 0,
                    forced_requests: 0,
                }
            ]
        );
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
        assert!(!d.is_ready(), "at the cap");
        d.handle_connection_closed(now);
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
                forced_connections: 0,
                forced_requests: 0,
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
                forced_connections: 2,
                forced_requests: 0,
            }]
        );
        // Connections dropped afterwards change nothing.
        d.handle_connection_closed(Millis(1_600));
        d.handle_timeout(Millis(9_999));
        assert!(effects(&mut d).is_empty());
        assert_eq!(d.admit(Millis(2_000)), Admission::Draining);
    }

    #[test]
    fn a_request_in_flight_is_answered_before_the_drain_is_done() {
        let mut d = drain(10, 1_000);
        d.handle_request_started(Millis(0));
        d.handle_shutdown(Millis(10));
        assert_eq!(
            effects(&mut d),
            [
                DrainEffect::ReadinessFalse,
                DrainEffect::ShutdownConnections
            ]
        );
        // One more arrives during the drain: counted too.
        d.handle_request_started(Millis(20));
        d.handle_request_ended(Millis(30));
        assert!(effects(&mut d).is_empty());
        assert_eq!(d.requests(), 1);
        d.handle_request_ended(Millis(40));
        assert_eq!(
            effects(&mut d),
            [DrainEffect::Done {
                forced_connections: 0,
                forced_requests: 0,
            }]
        );
        let mut d = drain(10, 1_000);
        d.handle_request_started(Millis(0));
        d.handle_shutdown(Millis(0));
        effects(&mut d);
        d.handle_timeout(Millis(1_000));
        assert_eq!(
            effects(&mut d),
            [DrainEffect::Done {
                forced_connections: 0,
                forced_requests: 1,
            }]
        );
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
                    forced_connections: 0,
                    forced_requests: 0,
                }
            ]
        );
    }
}
