//! The gRPC upstreams' own `/metrics` series (docs/metrics.md): per
//! upstream its connections and streams against their bounds, and per
//! pooled connection its streams against its limit.

use super::{ConnectionStats, PoolStats};
use std::fmt::Write as _;

/// Prometheus label value escaping (`\`, `"`, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends the `terminus_grpc_*` series of `upstreams` (name, stats) to
/// `out`; nothing when there are none.
pub fn write_prometheus(upstreams: &[(&str, PoolStats)], out: &mut String) {
    if upstreams.is_empty() {
        return;
    }
    type Series = (
        &'static str,
        &'static str,
        &'static str,
        fn(&PoolStats) -> u64,
    );
    let per_upstream: [Series; 6] = [
        (
            "terminus_grpc_connections",
            "gauge",
            "Open HTTP/2 connections in the upstream's pool.",
            |s| s.connections.len() as u64,
        ),
        (
            "terminus_grpc_connections_max",
            "gauge",
            "The upstream's max_connections.",
            |s| s.max_connections as u64,
        ),
        (
            "terminus_grpc_streams",
            "gauge",
            "gRPC calls in flight on the upstream (unary calls and open streams).",
            |s| s.streams as u64,
        ),
        (
            "terminus_grpc_streams_max",
            "gauge",
            "The upstream's max_concurrent_streams.",
            |s| s.max_streams as u64,
        ),
        (
            "terminus_grpc_connections_opened_total",
            "counter",
            "HTTP/2 connections opened to the upstream.",
            |s| s.opened_total,
        ),
        (
            "terminus_grpc_busy_total",
            "counter",
            "Calls answered UPSTREAM_BUSY: stream bound reached or every connection full.",
            |s| s.busy_total,
        ),
    ];
    for (name, kind, help, value) in per_upstream {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (upstream, stats) in upstreams {
            let _ = writeln!(
                out,
                "{name}{{upstream=\"{}\"}} {}",
                label(upstream),
                value(stats)
            );
        }
    }
    type PerConnection = (&'static str, &'static str, fn(&ConnectionStats) -> usize);
    let per_connection: [PerConnection; 2] = [
        (
            "terminus_grpc_connection_streams",
            "Streams on one pooled HTTP/2 connection.",
            |c| c.streams,
        ),
        (
            "terminus_grpc_connection_streams_max",
            "The most streams that connection may carry: max_streams_per_connection, or the server's SETTINGS_MAX_CONCURRENT_STREAMS when lower.",
            |c| c.stream_limit,
        ),
    ];
    for (name, help, value) in per_connection {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (upstream, stats) in upstreams {
            for connection in &stats.connections {
                let _ = writeln!(
                    out,
                    "{name}{{upstream=\"{}\",connection=\"{}\"}} {}",
                    label(upstream),
                    connection.id,
                    value(connection)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_labelled_by_upstream_and_connection() {
        let stats = PoolStats {
            connections: vec![
                ConnectionStats {
                    id: 1,
                    streams: 256,
                    stream_limit: 256,
                },
                ConnectionStats {
                    id: 3,
                    streams: 7,
                    stream_limit: 200,
                },
            ],
            max_connections: 64,
            streams: 263,
            max_streams: 16_384,
            opened_total: 3,
            busy_total: 2,
            connecting: 1,
            waiting: 5,
        };
        let mut out = String::new();
        write_prometheus(&[("demo", stats)], &mut out);
        for line in [
            "terminus_grpc_connections{upstream=\"demo\"} 2",
            "terminus_grpc_connections_max{upstream=\"demo\"} 64",
            "terminus_grpc_streams{upstream=\"demo\"} 263",
            "terminus_grpc_streams_max{upstream=\"demo\"} 16384",
            "terminus_grpc_connections_opened_total{upstream=\"demo\"} 3",
            "terminus_grpc_busy_total{upstream=\"demo\"} 2",
            "terminus_grpc_connection_streams{upstream=\"demo\",connection=\"3\"} 7",
            "terminus_grpc_connection_streams_max{upstream=\"demo\",connection=\"3\"} 200",
            "# TYPE terminus_grpc_busy_total counter",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
        let mut none = String::new();
        write_prometheus(&[], &mut none);
        assert!(none.is_empty());
    }
}
