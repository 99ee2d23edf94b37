//! The command line of `terminus-load`.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;
use terminus_core::protocol::Subprotocol;

/// Load generator for GraphQL-over-WebSocket servers (Terminus and its
/// benchmark peers): ramps connections, subscribes, measures delivery, then
/// drops every connection and waits until the server's /metrics are back to
/// their baseline.
#[derive(Debug, Clone, Parser)]
#[command(name = "terminus-load", version, about, long_about = None)]
pub struct Args {
    /// WebSocket endpoint of the server under test.
    #[arg(long, default_value = "ws://127.0.0.1:8080/graphql")]
    pub url: String,

    /// Prometheus text endpoint polled for the baseline, the chart and the
    /// reclaim check (default: the `url`'s host with path /metrics).
    #[arg(long)]
    pub metrics_url: Option<String>,

    /// Name printed in the table, the JSON and the chart.
    #[arg(long, default_value = "terminus")]
    pub label: String,

    /// What the clients do once connected.
    #[arg(long, value_enum, default_value_t = Mode::Hold)]
    pub mode: Mode,

    /// Simulated clients (WebSocket connections).
    #[arg(long, short = 'c', default_value_t = 100)]
    pub connections: usize,

    /// Subscriptions per connection (0: initialised idle connections).
    #[arg(long, short = 's', default_value_t = 1)]
    pub subscriptions: usize,

    /// New connections per second during the ramp (0: as fast as the
    /// pending-connect bound allows).
    #[arg(long, default_value_t = 1000.0)]
    pub connect_rate: f64,

    /// Connections allowed to be in TCP connect, WebSocket handshake or
    /// waiting for `connection_ack` at once, so the ramp never overflows
    /// the server's listen backlog.
    #[arg(long, default_value_t = 128)]
    pub max_pending_connects: usize,

    /// Subprotocol of the connections (`mixed`: alternate).
    #[arg(long, value_enum, default_value_t = ProtocolChoice::GraphqlTransportWs)]
    pub protocol: ProtocolChoice,

    /// Tick period of the default query; also the expected period that
    /// latency is measured against.
    #[arg(long, default_value_t = 1000)]
    pub every_ms: u64,

    /// The GraphQL document each subscription sends (default:
    /// `subscription { ticks(everyMs: <every-ms>) { seq } }`). Latency is
    /// only measured when results carry `data.ticks.seq`.
    #[arg(long)]
    pub query: Option<String>,

    /// Hold and churn modes: the clients subscribe once the whole ramp is
    /// acknowledged, client i of C after i/C of this spread, so ticks are
    /// spread evenly over the period instead of arriving in one burst
    /// (default: one tick period, --every-ms; "0s": all at once).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub subscribe_spread: Option<Duration>,

    /// How long to hold (hold mode) or run (churn and reconnect modes) once
    /// the ramp is done.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub hold: Duration,

    /// How every connection ends after the hold.
    #[arg(long, value_enum, default_value_t = EndMode::Abrupt)]
    pub end: EndMode,

    /// Bound on the ramp: connecting, acknowledging, and the first result
    /// of every subscription.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    pub ramp_timeout: Duration,

    /// Bound on one TCP connect plus WebSocket handshake.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,

    /// Bound on waiting for `connection_ack` (the client closes with 4504).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub ack_timeout: Duration,

    /// Bound on a clean close (the server's close frame) per connection.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub close_timeout: Duration,

    /// Series that must return to (at most) their baseline after the
    /// connections end, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "terminus_operations,terminus_upstream_streams,terminus_tasks,process_open_fds"
    )]
    pub reclaim_series: Vec<String>,

    /// Bound on the wait for the reclaim.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub reclaim_timeout: Duration,

    /// Period of /metrics polls while waiting for the reclaim.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10ms")]
    pub reclaim_poll: Duration,

    /// Period of the samples for the chart.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "500ms")]
    pub sample_interval: Duration,

    /// Bound on one /metrics request.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub metrics_timeout: Duration,

    /// The series charted as "live operations".
    #[arg(long, default_value = "terminus_operations")]
    pub ops_series: String,

    /// A series that must equal a value at the baseline, at the end of the
    /// hold, in every sample of a reconnect run, and after the reclaim
    /// (NAME=VALUE, repeatable), e.g. terminus_upstream_connections=1.
    #[arg(long = "expect", value_parser = parse_expectation)]
    pub expectations: Vec<(String, f64)>,

    /// Before taking the baseline, run one connection with one subscription
    /// until its first result, then close it: lazily created resources
    /// (the upstream connection) then exist in the baseline too.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub warmup: bool,

    /// Pause between the warmup and the baseline.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub settle: Duration,

    /// Process ids of the server under test, for its CPU time (from
    /// /proc/PID/stat, summed; repeat for a gateway and its upstream).
    #[arg(long)]
    pub pid: Vec<u32>,

    /// Executor threads of the load generator.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// WebSocket read buffer per connection in bytes (tungstenite's default
    /// of 128 KiB would cost 1.25 GiB at 10,000 connections).
    #[arg(long, default_value_t = 4096)]
    pub read_buffer: usize,

    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Draw the chart (SVG) here.
    #[arg(long)]
    pub svg: Option<PathBuf>,

    /// Exit with status 1 when the reclaim did not happen within its bound,
    /// an expectation failed, a connection failed or was closed by the
    /// server, or an operation ended with an error.
    #[arg(long)]
    pub fail_on_leak: bool,
}

/// What the clients do once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Ramp, subscribe, hold, then end every connection.
    Hold,
    /// Ramp, then on every subscription slot repeat: subscribe, wait for the
    /// first result, complete.
    Churn,
    /// Every client repeats: connect, subscribe, wait for the first result
    /// of each subscription, drop the socket abruptly.
    Reconnect,
}

/// How connections end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndMode {
    /// Drop the TCP socket: no `complete`, no close frame.
    Abrupt,
    /// `complete` every operation, then a close handshake (1000).
    Clean,
}

/// The subprotocol choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProtocolChoice {
    /// `graphql-transport-ws` on every connection.
    GraphqlTransportWs,
    /// Legacy `graphql-ws` on every connection.
    GraphqlWs,
    /// Alternate between the two.
    Mixed,
}

impl ProtocolChoice {
    /// The subprotocol of connection number `index`.
    pub fn for_connection(self, index: usize) -> Subprotocol {
        match self {
            ProtocolChoice::GraphqlTransportWs => Subprotocol::GraphqlTransportWs,
            ProtocolChoice::GraphqlWs => Subprotocol::GraphqlWs,
            ProtocolChoice::Mixed if index % 2 == 0 => Subprotocol::GraphqlTransportWs,
            ProtocolChoice::Mixed => Subprotocol::GraphqlWs,
        }
    }
}

impl Args {
    /// The subscription document.
    pub fn query(&self) -> String {
        self.query.clone().unwrap_or_else(|| {
            format!(
                "subscription {{ ticks(everyMs: {}) {{ seq }} }}",
                self.every_ms
            )
        })
    }

    /// The /metrics URL: given, or derived from the WebSocket URL.
    pub fn metrics_url(&self) -> Result<String, String> {
        if let Some(url) = &self.metrics_url {
            return Ok(url.clone());
        }
        let rest = self
            .url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("--url {}: only ws:// URLs are supported", self.url))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        Ok(format!("http://{authority}/metrics"))
    }

    /// Checks the combinations clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if self.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if self.max_pending_connects == 0 {
            return Err("--max-pending-connects must be at least 1".into());
        }
        if !(self.connect_rate.is_finite() && self.connect_rate >= 0.0) {
            return Err("--connect-rate must be a finite number >= 0".into());
        }
        if self.every_ms == 0 {
            return Err("--every-ms must be at least 1".into());
        }
        if self.read_buffer < 256 {
            return Err("--read-buffer must be at least 256 bytes".into());
        }
        if self.subscriptions == 0 && self.mode != Mode::Hold {
            return Err(format!(
                "--mode {:?} needs at least one subscription per connection",
                self.mode
            ));
        }
        if !self.url.starts_with("ws://") {
            return Err(format!("--url {}: only ws:// URLs are supported", self.url));
        }
        self.metrics_url().map(|_| ())
    }
}

fn parse_expectation(text: &str) -> Result<(String, f64), String> {
    // The value follows the last `=`: a labelled series name holds others.
    let (name, value) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("{text}: expected NAME=VALUE"))?;
    let value: f64 = value
        .trim()
        .parse()
        .map_err(|e| format!("{text}: the value is not a number: {e}"))?;
    if name.trim().is_empty() {
        return Err(format!("{text}: the series name is empty"));
    }
    Ok((name.trim().to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_derive_query_and_metrics_url() {
        let args =
            Args::try_parse_from(["terminus-load", "--url", "ws://127.0.0.1:9/graphql"]).unwrap();
        args.validate().unwrap();
        assert_eq!(args.metrics_url().unwrap(), "http://127.0.0.1:9/metrics");
        assert_eq!(
            args.query(),
            "subscription { ticks(everyMs: 1000) { seq } }"
        );
        assert_eq!(args.reclaim_series.len(), 4);
        assert!(args.warmup);
    }

    #[test]
    fn parses_expectations_and_durations() {
        let args = Args::try_parse_from([
            "terminus-load",
            "--expect",
            "terminus_upstream_connections=1",
            "--hold",
            "1m 30s",
            "--warmup",
            "false",
            "--protocol",
            "mixed",
        ])
        .unwrap();
        assert_eq!(
            args.expectations,
            vec![("terminus_upstream_connections".to_owned(), 1.0)]
        );
        assert_eq!(args.hold, Duration::from_secs(90));
        assert!(!args.warmup);
        assert_eq!(
            args.protocol.for_connection(0),
            Subprotocol::GraphqlTransportWs
        );
        assert_eq!(args.protocol.for_connection(1), Subprotocol::GraphqlWs);
        assert!(Args::try_parse_from(["terminus-load", "--expect", "x"]).is_err());
        assert!(Args::try_parse_from(["terminus-load", "--expect", "x=y"]).is_err());
        let labelled = Args::try_parse_from([
            "terminus-load",
            "--expect",
            "terminus_grpc_busy_total{upstream=\"demo\"}=0",
        ])
        .unwrap();
        assert_eq!(
            labelled.expectations,
            vec![(
                "terminus_grpc_busy_total{upstream=\"demo\"}".to_owned(),
                0.0
            )]
        );
    }

    #[test]
    fn rejects_bad_combinations() {
        let base = ["terminus-load", "--connections", "0"];
        assert!(Args::try_parse_from(base).unwrap().validate().is_err());
        let churn_without_subs =
            Args::try_parse_from(["terminus-load", "--mode", "churn", "-s", "0"]).unwrap();
        assert!(churn_without_subs.validate().is_err());
        let wss = Args::try_parse_from(["terminus-load", "--url", "wss://x/graphql"]).unwrap();
        assert!(wss.validate().is_err());
    }
}
