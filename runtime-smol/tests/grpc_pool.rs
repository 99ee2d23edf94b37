//! The gRPC client's connection pool against the demo upstream, over real
//! loopback sockets: streams spread over a bounded set of HTTP/2
//! connections, the server's stream limit is respected, a stream nobody
//! reads is back-pressured alone (its connection and the streams beside it
//! live on), and a killed connection is replaced.

use futures_lite::StreamExt;
use serde_json::json;
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use terminus::demo_upstream::{descriptor_pool, DemoUpstream};
use terminus::grpc::{GrpcStream, GrpcUpstream, GrpcUpstreamConfig};
use terminus_core::FailureKind;

const HELLO: &str = "terminus.demo.v1.Demo/Hello";
const TICKS: &str = "terminus.demo.v1.Demo/Ticks";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn upstream(endpoint: String, per_connection: usize, connections: usize) -> Arc<GrpcUpstream> {
    let config = GrpcUpstreamConfig {
        endpoint,
        call_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        max_streams_per_connection: per_connection,
        max_connections: connections,
        ..GrpcUpstreamConfig::default()
    };
    GrpcUpstream::from_descriptors("demo", &config, descriptor_pool()).unwrap()
}

/// Waits until `condition` holds, failing the test after `bound`.
async fn eventually(bound: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < bound,
            "{what} did not happen within {bound:?}"
        );
        smol::Timer::after(Duration::from_millis(5)).await;
    }
}

/// The next item of `stream`, failing the test after `bound`.
async fn next_within(
    stream: &mut GrpcStream,
    bound: Duration,
) -> Option<Result<serde_json::Value, terminus_core::UpstreamFailure>> {
    smol::future::or(stream.next(), async {
        smol::Timer::after(bound).await;
        panic!("no item within {bound:?}");
    })
    .await
}

/// Streams per pooled connection, in the pool's order.
fn spread(upstream: &GrpcUpstream) -> Vec<usize> {
    upstream
        .pool_stats()
        .connections
        .iter()
        .map(|connection| connection.streams)
        .collect()
}

#[test]
fn streams_spread_over_a_bounded_set_of_connections() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        let upstream = upstream(server.endpoint(), 4, 3);
        let mut streams = Vec::new();
        for _ in 0..12 {
            streams.push(
                upstream
                    .server_streaming(TICKS, json!({"everyMs": 10_000}))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(spread(&upstream), vec![4, 4, 4]);
        assert_eq!(upstream.open_connections(), 3);
        assert_eq!(server.accepted_connections(), 3);
        assert_eq!(upstream.open_streams(), 12);
        // Every connection is full and there may be no fourth: busy at once.
        let started = Instant::now();
        let busy = upstream.unary(HELLO, json!({})).await.unwrap_err();
        assert_eq!(busy.kind, FailureKind::Busy, "{busy}");
        assert!(busy.message.contains("3 connections"), "{}", busy.message);
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(upstream.pool_stats().busy_total, 1);
        // A freed place is reused; no connection is added.
        streams.remove(5);
        assert_eq!(spread(&upstream), vec![4, 3, 4]);
        let reply = upstream.unary(HELLO, json!({"name": "x"})).await.unwrap();
        assert_eq!(reply["message"], "Hello, x!");
        streams.push(
            upstream
                .server_streaming(TICKS, json!({"everyMs": 10_000}))
                .await
                .unwrap(),
        );
        assert_eq!(spread(&upstream), vec![4, 4, 4]);
        assert_eq!(server.accepted_connections(), 3);
        drop(streams);
        // Emptied connections beside the first are closed: the pool
        // shrinks back after load.
        assert_eq!(spread(&upstream), vec![0]);
        eventually(Duration::from_secs(3), "two connections closed", || {
            upstream.open_connections() == 1
        })
        .await;
        assert_eq!(upstream.open_streams(), 0);
        eventually(Duration::from_secs(3), "every stream reset", || {
            server.live_streams() == 0
        })
        .await;
        assert_eq!(upstream.pool_stats().opened_total, 3);
    });
}

#[test]
fn the_servers_stream_limit_is_respected() {
    smol::block_on(async {
        let server = DemoUpstream::start_with_stream_limit(loopback(), 2)
            .await
            .unwrap();
        // Our own limit is 100; the server announces 2.
        let upstream = upstream(server.endpoint(), 100, 4);
        let mut streams = Vec::new();
        for _ in 0..6 {
            streams.push(
                upstream
                    .server_streaming(TICKS, json!({"everyMs": 10_000}))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(spread(&upstream), vec![2, 2, 2]);
        let limits: Vec<usize> = upstream
            .pool_stats()
            .connections
            .iter()
            .map(|connection| connection.stream_limit)
            .collect();
        assert_eq!(limits, vec![2, 2, 2]);
        assert_eq!(server.accepted_connections(), 3);
        eventually(
            Duration::from_secs(3),
            "the server serves 6 streams",
            || server.live_streams() == 6,
        )
        .await;
    });
}

#[test]
fn a_stream_nobody_reads_does_not_fail_its_connection() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        let upstream = upstream(server.endpoint(), 256, 4);
        // Ten streams that tick as fast as the server can, never read: what
        // a subscriber that stops reading its WebSocket leaves behind.
        let mut stalled = Vec::new();
        for _ in 0..10 {
            stalled.push(
                upstream
                    .server_streaming(TICKS, json!({"everyMs": 0}))
                    .await
                    .unwrap(),
            );
        }
        let mut reader = upstream
            .server_streaming(TICKS, json!({"everyMs": 1}))
            .await
            .unwrap();
        assert_eq!(spread(&upstream), vec![11], "all on one connection");
        // Read beside them for 12 s. Without per-stream back-pressure the
        // unread ticks spend h2's small-frame budget and our own client
        // sends GOAWAY ENHANCE_YOUR_CALM within seconds, failing `reader`.
        let started = Instant::now();
        let mut last = 0;
        let mut received = 0;
        while started.elapsed() < Duration::from_secs(12) {
            let tick = next_within(&mut reader, Duration::from_secs(2))
                .await
                .expect("the stream does not end")
                .unwrap_or_else(|failure| {
                    panic!("the reader failed after {:?}: {failure}", started.elapsed())
                });
            let seq = tick["seq"].as_u64().unwrap();
            assert_eq!(seq, last + 1, "ticks arrive in order, none lost");
            last = seq;
            received += 1;
        }
        assert!(received >= 500, "only {received} ticks in 12 s");
        assert_eq!(server.accepted_connections(), 1, "the connection lived");
        assert_eq!(upstream.open_connections(), 1);
        // The stalled streams were held back, not broken: each still reads
        // from its first tick on, in order.
        for stream in &mut stalled {
            for expected in 1..=3 {
                let tick = next_within(stream, Duration::from_secs(2))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(tick["seq"], expected);
            }
        }
        // And new calls still go over the same connection.
        let reply = upstream.unary(HELLO, json!({"name": "y"})).await.unwrap();
        assert_eq!(reply["message"], "Hello, y!");
        assert_eq!(server.accepted_connections(), 1);
    });
}

/// A TCP forwarder between the client and the server whose connections
/// can be killed one by one.
struct Proxy {
    addr: SocketAddr,
    /// Each accepted client socket and its server socket, in accept order.
    pairs: Arc<Mutex<Vec<(smol::net::TcpStream, smol::net::TcpStream)>>>,
    _tasks: Arc<Mutex<Vec<smol::Task<()>>>>,
    _accept: smol::Task<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        Proxy::start_delayed(target, Duration::ZERO).await
    }

    /// A proxy that holds the server's first bytes on each connection (its
    /// SETTINGS) for `delay`.
    async fn start_delayed(target: SocketAddr, delay: Duration) -> Proxy {
        let listener = smol::net::TcpListener::bind(loopback()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pairs = Arc::new(Mutex::new(Vec::new()));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let pairs = pairs.clone();
            let tasks = tasks.clone();
            smol::spawn(async move {
                loop {
                    let (client, _) = listener.accept().await.unwrap();
                    let server = smol::net::TcpStream::connect(target).await.unwrap();
                    let (from_server, to_client) = (server.clone(), client.clone());
                    let copies = [
                        smol::spawn(copy(client.clone(), server.clone())),
                        smol::spawn(async move {
                            smol::Timer::after(delay).await;
                            copy(from_server, to_client).await;
                        }),
                    ];
                    tasks.lock().unwrap().extend(copies);
                    pairs.lock().unwrap().push((client, server));
                }
            })
        };
        Proxy {
            addr,
            pairs,
            _tasks: tasks,
            _accept: accept,
        }
    }

    fn accepted(&self) -> usize {
        self.pairs.lock().unwrap().len()
    }

    /// Closes the `index`th accepted connection on both sides.
    fn kill(&self, index: usize) {
        let pairs = self.pairs.lock().unwrap();
        let (client, server) = &pairs[index];
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    }
}

async fn copy(from: smol::net::TcpStream, to: smol::net::TcpStream) {
    let _ = smol::io::copy(from, to.clone()).await;
    let _ = to.shutdown(Shutdown::Both);
}

#[test]
fn a_killed_connection_fails_only_its_streams_and_is_replaced() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        let proxy = Proxy::start(server.local_addr()).await;
        let upstream = upstream(format!("http://{}", proxy.addr), 2, 3);
        let mut streams = Vec::new();
        for _ in 0..4 {
            let mut stream = upstream
                .server_streaming(TICKS, json!({"everyMs": 5}))
                .await
                .unwrap();
            assert_eq!(
                next_within(&mut stream, Duration::from_secs(2))
                    .await
                    .unwrap()
                    .unwrap()["seq"],
                1
            );
            streams.push(stream);
        }
        assert_eq!(spread(&upstream), vec![2, 2]);
        assert_eq!(proxy.accepted(), 2);
        proxy.kill(0);
        // The first connection's two streams fail...
        for stream in &mut streams[..2] {
            let failure = loop {
                match next_within(stream, Duration::from_secs(5)).await {
                    Some(Ok(_)) => continue,
                    Some(Err(failure)) => break failure,
                    None => panic!("the stream ended without an error"),
                }
            };
            assert_eq!(failure.kind, FailureKind::Unavailable, "{failure}");
        }
        // ...while the second connection's keep ticking.
        for stream in &mut streams[2..] {
            for _ in 0..20 {
                next_within(stream, Duration::from_secs(2))
                    .await
                    .unwrap()
                    .unwrap();
            }
        }
        streams.drain(..2);
        eventually(
            Duration::from_secs(3),
            "the dead connection is gone",
            || upstream.open_connections() == 1,
        )
        .await;
        // New streams fill the live connection's free places, then a
        // replacement connection.
        for _ in 0..2 {
            streams.push(
                upstream
                    .server_streaming(TICKS, json!({"everyMs": 5}))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(spread(&upstream), vec![2, 2]);
        assert_eq!(proxy.accepted(), 3, "one replacement connection");
        assert_eq!(upstream.open_connections(), 2);
        assert_eq!(upstream.pool_stats().opened_total, 3);
        for stream in &mut streams {
            next_within(stream, Duration::from_secs(2))
                .await
                .unwrap()
                .unwrap();
        }
    });
}

#[test]
fn bounds_that_h2_could_not_keep_are_refused() {
    let config = GrpcUpstreamConfig {
        endpoint: "http://127.0.0.1:1".into(),
        max_streams_per_connection: 1000,
        stream_window_bytes: 65_535,
        ..GrpcUpstreamConfig::default()
    };
    let error = GrpcUpstream::from_descriptors("demo", &config, descriptor_pool()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("max_streams_per_connection (1000) * stream_window_bytes (65535)"),
        "{message}"
    );
    for (connections, per_connection) in [(0, 10), (10, 0)] {
        let config = GrpcUpstreamConfig {
            endpoint: "http://127.0.0.1:1".into(),
            max_connections: connections,
            max_streams_per_connection: per_connection,
            ..GrpcUpstreamConfig::default()
        };
        let error = GrpcUpstream::from_descriptors("demo", &config, descriptor_pool()).unwrap_err();
        assert!(error.to_string().contains("at least 1"), "{error}");
    }
}

#[test]
fn a_burst_of_calls_waiting_for_a_connection_all_start() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        // 300 calls at once on an empty pool: one opens the first
        // connection while the others wait for its attempt to end (and for
        // the server's SETTINGS, before which h2 allows 100 streams), then
        // all of them look again together. A lost wake-up leaves calls
        // waiting until `call_timeout` (3 s) and fails them.
        let upstream = upstream(server.endpoint(), 1024, 4);
        let calls: Vec<_> = (0..300)
            .map(|_| {
                let upstream = upstream.clone();
                smol::spawn(async move {
                    upstream
                        .server_streaming(TICKS, json!({"everyMs": 10_000}))
                        .await
                })
            })
            .collect();
        let mut streams = Vec::new();
        for call in calls {
            streams.push(call.await.unwrap());
        }
        assert_eq!(upstream.open_streams(), 300);
        assert_eq!(spread(&upstream).iter().sum::<usize>(), 300);
        assert!(upstream.open_connections() <= 4);
        assert_eq!(upstream.pool_stats().busy_total, 0);
        eventually(
            Duration::from_secs(3),
            "the server serves 300 streams",
            || server.live_streams() == 300,
        )
        .await;
    });
}

#[test]
fn the_servers_limit_is_seen_when_its_settings_come_late() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        // The server's SETTINGS (10,000 streams) reach the client 300 ms
        // after it connects, so the first 100 calls go out while h2 still
        // assumes 100 (hyper's default) and the pool sees the connection
        // full. Once they have started, the SETTINGS are in: the next 200
        // calls fit on the same connection (1,024 streams). Before, the
        // pool read the limit from a copy refreshed only when hyper's
        // dispatcher was polled, which no request did any more: the copy
        // stayed at 100, the pool opened the second connection (100 again)
        // and refused the last 100 calls with UPSTREAM_BUSY.
        let proxy = Proxy::start_delayed(server.local_addr(), Duration::from_millis(300)).await;
        let upstream = upstream(format!("http://{}", proxy.addr), 1024, 2);
        let burst = |count: usize| {
            let calls: Vec<_> = (0..count)
                .map(|_| {
                    let upstream = upstream.clone();
                    smol::spawn(async move {
                        upstream
                            .server_streaming(TICKS, json!({"everyMs": 10_000}))
                            .await
                    })
                })
                .collect();
            async move {
                let mut streams = Vec::new();
                let mut failures = Vec::new();
                for call in calls {
                    match call.await {
                        Ok(stream) => streams.push(stream),
                        Err(failure) => failures.push(failure.to_string()),
                    }
                }
                (streams, failures)
            }
        };
        let (mut streams, failures) = burst(100).await;
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(spread(&upstream), vec![100]);
        let (more, failures) = burst(200).await;
        streams.extend(more);
        assert!(
            failures.is_empty(),
            "{} calls failed, the first: {:?}; spread {:?}",
            failures.len(),
            failures.first(),
            spread(&upstream)
        );
        assert_eq!(spread(&upstream), vec![300]);
        assert_eq!(proxy.accepted(), 1);
        assert_eq!(upstream.pool_stats().busy_total, 0);
        let limits: Vec<usize> = upstream
            .pool_stats()
            .connections
            .iter()
            .map(|connection| connection.stream_limit)
            .collect();
        assert_eq!(limits, vec![1024]);
        eventually(
            Duration::from_secs(3),
            "the server serves 300 streams",
            || server.live_streams() == 300,
        )
        .await;
        drop(streams);
    });
}

/// A listening socket whose accept queue is full and never drained: every
/// further TCP connect to it hangs (Linux drops the SYNs of a listener with
/// a full queue), so each connection attempt of the pool stays under way
/// until `connect_timeout`.
fn a_listener_that_never_answers() -> (std::net::TcpListener, Vec<std::net::TcpStream>) {
    use rustix::net::{AddressFamily, SocketType};
    let socket = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    rustix::net::bind(&socket, &loopback()).unwrap();
    rustix::net::listen(&socket, 0).unwrap();
    let listener = std::net::TcpListener::from(socket);
    let addr = listener.local_addr().unwrap();
    // The queue holds one connection (two on some kernels): fill it.
    let fillers = (0..2)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()
        })
        .collect();
    (listener, fillers)
}

#[test]
fn a_burst_of_calls_opens_the_connections_it_needs_side_by_side() {
    smol::block_on(async {
        let (listener, _fillers) = a_listener_that_never_answers();
        let config = GrpcUpstreamConfig {
            endpoint: format!("http://{}", listener.local_addr().unwrap()),
            call_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(60),
            max_streams_per_connection: 4,
            max_connections: 3,
            ..GrpcUpstreamConfig::default()
        };
        let upstream = GrpcUpstream::from_descriptors("demo", &config, descriptor_pool()).unwrap();
        let mut calls = Vec::new();
        let call = |calls: &mut Vec<smol::Task<()>>| {
            let upstream = upstream.clone();
            calls.push(smol::spawn(async move {
                let _ = upstream
                    .server_streaming(TICKS, json!({"everyMs": 10_000}))
                    .await;
            }));
        };
        let state = || {
            let stats = upstream.pool_stats();
            (stats.connecting, stats.waiting)
        };
        let bound = Duration::from_secs(10);
        // One attempt covers `max_streams_per_connection` calls: its own
        // and three that wait for it.
        for _ in 0..4 {
            call(&mut calls);
        }
        eventually(bound, "1 attempt and 3 calls waiting", || state() == (1, 3)).await;
        // The fifth needs another connection: a second attempt, at once,
        // beside the first (one attempt at a time kept it waiting).
        call(&mut calls);
        eventually(bound, "2 attempts and 3 calls waiting", || {
            state() == (2, 3)
        })
        .await;
        for _ in 0..7 {
            call(&mut calls);
        }
        eventually(bound, "3 attempts and 9 calls waiting", || {
            state() == (3, 9)
        })
        .await;
        // `max_connections` attempts are under way: the next call waits.
        call(&mut calls);
        eventually(bound, "the 13th call waiting", || state() == (3, 10)).await;
        assert!(upstream.pool_stats().connections.is_empty());
        // Calls given up (their deadline, or their client gone) end their
        // attempts and their waits.
        drop(calls);
        eventually(bound, "no attempt and no call waiting", || {
            state() == (0, 0)
        })
        .await;
    });
}
