//! The offline mode: a seeded simulation entirely inside the page. The
//! core's deterministic driver ([`terminus_core::sim::Sim`]) wires N
//! [`ClientConnection`](terminus_core::client::ClientConnection)s to N
//! audited [`ServerConnection`](terminus_core::server::ServerConnection)s;
//! here its upstream is [`DemoGraphqlUpstream`], so every operation runs
//! through the real GraphQL engine against a simulated demo gRPC service.
//! The page steps it in batches and reads [`OfflineCounters`] after each.

use crate::upstream::{DemoGraphqlUpstream, DemoServiceConfig};
use serde::{Deserialize, Serialize};
use terminus_core::sim::{Faults, Sim, SimConfig, TraceFrame};

/// Largest simulation the page may ask for (memory and step time grow with
/// it; 20,000 pairs stay well under a tab's memory).
pub const MAX_CLIENTS: usize = 20_000;

/// The documents simulated clients subscribe to: every field of the demo
/// schema, a stream that never ends by itself, one that does, queries, the
/// shared clock, a room and the mutation that posts to it.
pub const QUERIES: [&str; 8] = [
    "subscription { ticks(everyMs: 250) { seq } }",
    "subscription Countdown { ticks(everyMs: 100, limit: 10) { seq __typename } }",
    "subscription Slow { ticks(everyMs: 1000) { seq } }",
    "{ hello(name: \"simulator\") }",
    "query Greeting { greeting: hello(name: \"browser\") __typename }",
    "subscription Clock { clock(everyMs: 500) { seq } }",
    "subscription Lobby { room(name: \"lobby\") { seq text } }",
    "mutation Say { say(room: \"lobby\", text: \"hello from the simulator\") }",
];

/// The fault knobs, each a probability per client in `0..=1`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultKnobs {
    /// The socket dies at a random moment, without a close frame.
    pub abrupt_disconnect: f64,
    /// The client never answers the server's transport pings.
    pub lost_pong: f64,
    /// From a random moment on, the client reads nothing.
    pub slow_reader: f64,
    /// A gRPC call fails with `UPSTREAM_UNAVAILABLE` (per call).
    pub upstream_error: f64,
    /// A `subscribe` reusing an active id is injected.
    pub duplicate_id: f64,
    /// A malformed frame is injected.
    pub malformed_frame: f64,
    /// The gateway rejects the client's `connection_init`.
    pub reject_auth: f64,
}

/// What the page asks for (JSON, camelCase; absent fields take defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct OfflineOptions {
    /// The seed of everything random: the same seed gives the same run.
    pub seed: u64,
    /// Simulated clients (each with its own server connection).
    pub clients: usize,
    /// Share of clients speaking legacy `graphql-ws`, `0..=1`.
    pub legacy_share: f64,
    /// Fewest operations a client requests.
    pub ops_min: u64,
    /// Most operations a client requests.
    pub ops_max: u64,
    /// Chance that a client completes an operation itself.
    pub complete_early: f64,
    /// One-way network latency in virtual ms.
    pub latency_ms: u64,
    /// Virtual ms after which every client still open closes normally.
    pub duration_ms: u64,
    /// The fault knobs.
    pub faults: FaultKnobs,
}

impl Default for OfflineOptions {
    fn default() -> Self {
        OfflineOptions {
            seed: 1,
            clients: 100,
            legacy_share: 0.3,
            ops_min: 1,
            ops_max: 4,
            complete_early: 0.3,
            latency_ms: 5,
            duration_ms: 30_000,
            faults: FaultKnobs::default(),
        }
    }
}

impl OfflineOptions {
    /// Parses and checks the page's JSON.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let options: OfflineOptions =
            serde_json::from_str(json).map_err(|e| format!("invalid simulation options: {e}"))?;
        options.check()?;
        Ok(options)
    }

    /// Checks every bound; the message names the field.
    pub fn check(&self) -> Result<(), String> {
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(format!(
                "clients must be 1..={MAX_CLIENTS}, not {}",
                self.clients
            ));
        }
        if self.ops_min > self.ops_max || self.ops_max > 100 {
            return Err(format!(
                "opsMin..opsMax must be a range within 0..=100, not {}..{}",
                self.ops_min, self.ops_max
            ));
        }
        if !(1_000..=3_600_000).contains(&self.duration_ms) {
            return Err(format!(
                "durationMs must be 1000..=3600000, not {}",
                self.duration_ms
            ));
        }
        if self.latency_ms > 10_000 {
            return Err(format!(
                "latencyMs must be at most 10000, not {}",
                self.latency_ms
            ));
        }
        let f = &self.faults;
        let probabilities = [
            ("legacyShare", self.legacy_share),
            ("completeEarly", self.complete_early),
            ("faults.abruptDisconnect", f.abrupt_disconnect),
            ("faults.lostPong", f.lost_pong),
            ("faults.slowReader", f.slow_reader),
            ("faults.upstreamError", f.upstream_error),
            ("faults.duplicateId", f.duplicate_id),
            ("faults.malformedFrame", f.malformed_frame),
            ("faults.rejectAuth", f.reject_auth),
        ];
        for (name, p) in probabilities {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be a probability in 0..=1, not {p}"));
            }
        }
        Ok(())
    }

    fn sim_config(&self) -> SimConfig {
        let f = &self.faults;
        SimConfig {
            seed: self.seed,
            clients: self.clients,
            legacy_share: self.legacy_share,
            ops_per_client: (self.ops_min, self.ops_max),
            complete_early: self.complete_early,
            latency_ms: self.latency_ms,
            duration_ms: self.duration_ms,
            faults: Faults {
                abrupt_close: f.abrupt_disconnect,
                lost_pong: f.lost_pong,
                slow_reader: f.slow_reader,
                duplicate_id: f.duplicate_id,
                malformed_frame: f.malformed_frame,
                reject_auth: f.reject_auth,
            },
            queries: QUERIES.iter().map(|q| (*q).to_owned()).collect(),
            ..SimConfig::default()
        }
    }
}

/// What the page shows after each batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfflineCounters {
    /// The virtual clock, in ms.
    pub now_ms: u64,
    /// Distinct instants processed.
    pub steps: u64,
    /// Nothing is left to happen (and the end state has been checked).
    pub settled: bool,
    /// Clients simulated.
    pub clients: usize,
    /// Clients whose connection is still open.
    pub open_clients: usize,
    /// Operations the servers are running.
    pub live_operations: usize,
    /// Operations the servers started.
    pub started: u64,
    /// Operations ended by the upstream's `complete`.
    pub completed: u64,
    /// Operations ended by an `error`.
    pub errored: u64,
    /// Operations ended by a cancel (client complete, socket gone, close).
    pub cancelled: u64,
    /// Broken rules found by the ledgers (and, once settled, by the end
    /// checks).
    pub violations: usize,
    /// Faults injected.
    pub faults: u64,
    /// gRPC calls in flight on the simulated demo service.
    pub upstream_calls: usize,
    /// Frames the clients sent.
    pub frames_to_server: u64,
    /// Frames the servers sent.
    pub frames_to_client: u64,
}

/// One frame of the selected client's log, for the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogFrame {
    /// When it was sent (virtual or wall-clock ms since the run started).
    pub at_ms: u64,
    /// Sent by the client (else received from the server).
    pub from_client: bool,
    /// The frame or socket event.
    pub text: String,
}

impl From<TraceFrame> for LogFrame {
    fn from(frame: TraceFrame) -> Self {
        LogFrame {
            at_ms: frame.at.0,
            from_client: frame.from_client,
            text: frame.text,
        }
    }
}

/// The offline simulation; see the module docs.
pub struct OfflineRun {
    sim: Sim<DemoGraphqlUpstream>,
    /// The end checks, computed once when the run settles.
    findings: Option<Vec<String>>,
}

impl OfflineRun {
    /// A run of `options`.
    pub fn new(options: &OfflineOptions) -> Result<Self, String> {
        options.check()?;
        let upstream = DemoGraphqlUpstream::new(
            options.seed ^ 0xDE40,
            DemoServiceConfig {
                error_probability: options.faults.upstream_error,
                ..DemoServiceConfig::default()
            },
        );
        Ok(OfflineRun {
            sim: Sim::with_upstream(options.sim_config(), upstream),
            findings: None,
        })
    }

    /// Advances the virtual clock by at most `max_steps` deadlines; returns
    /// whether anything is left to happen. Once nothing is, the end state
    /// is checked (see [`Self::findings`]).
    pub fn step_batch(&mut self, max_steps: u32) -> bool {
        if self.findings.is_some() {
            return false;
        }
        for _ in 0..max_steps {
            if !self.sim.step() {
                let findings = self.sim.findings();
                self.findings = Some(findings.iter().map(ToString::to_string).collect());
                return false;
            }
        }
        true
    }

    /// The counters now.
    pub fn counters(&self) -> OfflineCounters {
        let stats = self.sim.stats();
        let pairs = self.sim.pairs();
        let violations = match &self.findings {
            Some(findings) => findings.len(),
            None => pairs
                .iter()
                .map(|p| p.server_violations().len() + p.client_violations().len())
                .sum(),
        };
        OfflineCounters {
            now_ms: self.sim.now().0,
            steps: stats.steps,
            settled: self.findings.is_some(),
            clients: pairs.len(),
            open_clients: pairs.iter().filter(|p| !p.client().is_closed()).count(),
            live_operations: pairs.iter().map(|p| p.server().live_operations()).sum(),
            started: stats.starts,
            completed: stats.ended_by_complete,
            errored: stats.ended_by_error,
            cancelled: stats.cancels,
            violations,
            faults: stats.faults,
            upstream_calls: self.sim.upstream().open_calls(),
            frames_to_server: stats.frames_to_server,
            frames_to_client: stats.frames_to_client,
        }
    }

    /// Every broken rule, once the run has settled (`None` before).
    pub fn findings(&self) -> Option<&[String]> {
        self.findings.as_deref()
    }

    /// Shows the frames of client `index` from now on (`None`: of none).
    pub fn select_client(&mut self, index: Option<usize>) {
        self.sim
            .trace_pair(index.filter(|i| *i < self.sim.pairs().len()));
    }

    /// The selected client's frames since the last call.
    pub fn take_log(&mut self) -> Vec<LogFrame> {
        self.sim
            .take_trace()
            .into_iter()
            .map(LogFrame::from)
            .collect()
    }

    /// The underlying driver, for checks.
    pub fn sim(&self) -> &Sim<DemoGraphqlUpstream> {
        &self.sim
    }
}

#[cfg(test)]
mod tests;
