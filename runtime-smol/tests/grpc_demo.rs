//! The gRPC client against the demo upstream (and a deliberately slow
//! HTTP/2 server), over real loopback sockets.

use futures_lite::StreamExt;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use terminus::demo_upstream::{descriptor_pool, DemoUpstream};
use terminus::grpc::{GrpcUpstream, GrpcUpstreamConfig};
use terminus_core::FailureKind;

const HELLO: &str = "terminus.demo.v1.Demo/Hello";
const TICKS: &str = "terminus.demo.v1.Demo/Ticks";

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(endpoint: String) -> GrpcUpstreamConfig {
    GrpcUpstreamConfig {
        endpoint,
        call_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..GrpcUpstreamConfig::default()
    }
}

fn upstream(endpoint: String) -> Arc<GrpcUpstream> {
    GrpcUpstream::from_descriptors("demo", &config(endpoint), descriptor_pool()).unwrap()
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

#[test]
fn unary_hello_answers_with_the_name() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        let upstream = upstream(server.endpoint());
        assert_eq!(
            upstream.open_connections(),
            0,
            "the connection is made lazily"
        );
        let reply = upstream.unary(HELLO, json!({"name": "Ada"})).await.unwrap();
        assert_eq!(reply, json!({"message": "Hello, Ada!"}));
        let reply = upstream.unary(HELLO, json!({})).await.unwrap();
        assert_eq!(reply, json!({"message": "Hello, world!"}));
        assert_eq!(upstream.open_connections(), 1);
        assert_eq!(upstream.open_streams(), 0);
        assert_eq!(server.accepted_connections(), 1);
    });
}

#[test]
fn ticks_stream_until_the_limit() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        let upstream = upstream(server.endpoint());
        let mut stream = upstream
            .server_streaming(TICKS, json!({"everyMs": 2, "limit": 3}))
            .await
            .unwrap();
        assert_eq!(upstream.open_streams(), 1);
        let mut seen = Vec::new();
        while let Some(item) = stream.next().await {
            seen.push(item.unwrap());
        }
        assert_eq!(
            seen,
            vec![json!({"seq": 1}), json!({"seq": 2}), json!({"seq": 3})]
        );
        drop(stream);
        assert_eq!(upstream.open_streams(), 0);
        eventually(Duration::from_secs(2), "the server ends the stream", || {
            server.live_streams() == 0
        })
        .await;
        assert_eq!(
            server.cancelled_streams(),
            0,
            "a completed stream is not a cancellation"
        );
        // limit 0 completes at once with no items.
        let mut empty = upstream
            .server_streaming(TICKS, json!({"everyMs": 1000, "limit": 0}))
            .await
            .unwrap();
        assert!(empty.next().await.is_none());
    });
}

#[test]
fn fail_at_ends_the_stream_with_the_upstream_message() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        let upstream = upstream(server.endpoint());
        let mut stream = upstream
            .server_streaming(TICKS, json!({"everyMs": 1, "failAt": 3}))
            .await
            .unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), json!({"seq": 1}));
        assert_eq!(stream.next().await.unwrap().unwrap(), json!({"seq": 2}));
        let failure = stream.next().await.unwrap().unwrap_err();
        assert_eq!(failure.kind, FailureKind::Failed);
        assert_eq!(failure.message, "tick 3 failed on purpose");
        assert!(stream.next().await.is_none(), "nothing follows the failure");
    });
}

#[test]
fn concurrency_limit_fails_fast_with_busy() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        let config = GrpcUpstreamConfig {
            max_concurrent_streams: 2,
            ..config(server.endpoint())
        };
        let upstream = GrpcUpstream::from_descriptors("demo", &config, descriptor_pool()).unwrap();
        let first = upstream
            .server_streaming(TICKS, json!({"everyMs": 1000}))
            .await
            .unwrap();
        let _second = upstream
            .server_streaming(TICKS, json!({"everyMs": 1000}))
            .await
            .unwrap();
        let started = Instant::now();
        let failure = upstream
            .unary(HELLO, json!({"name": "x"}))
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "Busy must be immediate"
        );
        assert_eq!(failure.kind, FailureKind::Busy);
        assert_eq!(
            failure.message,
            "upstream demo is at its concurrency limit (2)"
        );
        let failure = upstream
            .server_streaming(TICKS, json!({"everyMs": 1}))
            .await
            .unwrap_err();
        assert_eq!(failure.kind, FailureKind::Busy);
        drop(first);
        assert_eq!(upstream.open_streams(), 1);
        let reply = upstream.unary(HELLO, json!({"name": "x"})).await.unwrap();
        assert_eq!(reply, json!({"message": "Hello, x!"}));
    });
}

#[test]
fn dropped_streams_are_reset_on_one_shared_connection() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        let upstream = upstream(server.endpoint());
        let mut streams = Vec::new();
        for _ in 0..200 {
            streams.push(
                upstream
                    .server_streaming(TICKS, json!({"everyMs": 10_000}))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(upstream.open_streams(), 200);
        eventually(
            Duration::from_secs(5),
            "the server sees 200 streams",
            || server.live_streams() == 200,
        )
        .await;
        drop(streams);
        assert_eq!(upstream.open_streams(), 0);
        eventually(
            Duration::from_secs(2),
            "the server sees every stream reset",
            || server.live_streams() == 0,
        )
        .await;
        assert_eq!(server.cancelled_streams(), 200);
        assert_eq!(
            server.accepted_connections(),
            1,
            "one TCP connection throughout"
        );
        assert_eq!(upstream.open_connections(), 1);
        // The connection is still good after 200 resets.
        let reply = upstream
            .unary(HELLO, json!({"name": "again"}))
            .await
            .unwrap();
        assert_eq!(reply["message"], "Hello, again!");
        assert_eq!(server.accepted_connections(), 1);
    });
}

#[test]
fn upstream_restart_fails_streams_then_reconnects() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        let addr = server.local_addr();
        let upstream = upstream(server.endpoint());
        let mut stream = upstream
            .server_streaming(TICKS, json!({"everyMs": 5}))
            .await
            .unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), json!({"seq": 1}));
        server.stop().await;
        // The stream ends with an error (after any ticks already in flight).
        let failure = loop {
            let item = smol::future::or(stream.next(), async {
                smol::Timer::after(Duration::from_secs(5)).await;
                panic!("the stream did not notice the upstream stopping");
            })
            .await;
            match item {
                Some(Ok(_)) => continue,
                Some(Err(failure)) => break failure,
                None => panic!("the stream ended without an error"),
            }
        };
        assert_eq!(failure.kind, FailureKind::Unavailable, "{failure}");
        assert!(stream.next().await.is_none());
        drop(stream);
        assert_eq!(upstream.open_streams(), 0);
        eventually(
            Duration::from_secs(2),
            "the dead connection is noticed",
            || upstream.open_connections() == 0,
        )
        .await;
        let down = upstream.unary(HELLO, json!({})).await.unwrap_err();
        assert_eq!(down.kind, FailureKind::Unavailable, "{down}");

        let restarted = DemoUpstream::start(addr).await.unwrap();
        let started = Instant::now();
        let reply = loop {
            match upstream.unary(HELLO, json!({"name": "back"})).await {
                Ok(reply) => break reply,
                Err(failure) => {
                    assert_eq!(failure.kind, FailureKind::Unavailable, "{failure}");
                    assert!(
                        started.elapsed() < Duration::from_secs(3),
                        "no reconnect: {failure}"
                    );
                    smol::Timer::after(Duration::from_millis(10)).await;
                }
            }
        };
        assert_eq!(reply, json!({"message": "Hello, back!"}));
        assert_eq!(upstream.open_connections(), 1);
        let mut ticks = upstream
            .server_streaming(TICKS, json!({"everyMs": 1, "limit": 1}))
            .await
            .unwrap();
        assert_eq!(ticks.next().await.unwrap().unwrap(), json!({"seq": 1}));
        assert!(ticks.next().await.is_none());
        assert_eq!(restarted.accepted_connections(), 1);
    });
}

#[test]
fn bad_requests_get_clear_errors_and_nothing_else_breaks() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        let upstream = upstream(server.endpoint());
        let failure = upstream
            .unary("terminus.demo.v1.Demo/Goodbye", json!({}))
            .await
            .unwrap_err();
        assert_eq!(failure.kind, FailureKind::BadInput);
        assert!(failure.message.contains("no method Goodbye"), "{failure}");
        let failure = upstream.unary(HELLO, json!({"name": 5})).await.unwrap_err();
        assert_eq!(failure.kind, FailureKind::BadInput);
        assert!(
            failure.message.contains("terminus.demo.v1.HelloRequest"),
            "{failure}"
        );
        let failure = upstream
            .server_streaming(TICKS, json!({"limit": "many"}))
            .await
            .unwrap_err();
        assert_eq!(failure.kind, FailureKind::BadInput);
        let failure = upstream
            .server_streaming(HELLO, Value::Null)
            .await
            .unwrap_err();
        assert_eq!(failure.kind, FailureKind::BadInput);
        assert_eq!(upstream.open_streams(), 0);
        assert_eq!(
            server.accepted_connections(),
            0,
            "bad input never reaches the upstream"
        );
        let reply = upstream.unary(HELLO, Value::Null).await.unwrap();
        assert_eq!(reply, json!({"message": "Hello, world!"}));
    });
}

/// An owned-task executor for the slow test server below.
#[derive(Clone, Default)]
struct TestExecutor(Arc<Mutex<Vec<smol::Task<()>>>>);

impl<F> hyper::rt::Executor<F> for TestExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.lock().unwrap().push(smol::spawn(async move {
            future.await;
        }));
    }
}

/// Counts the calls a slow HTTP/2 server received and the ones whose
/// handler was dropped (the client reset the stream).
#[derive(Default)]
struct SlowCounts {
    received: AtomicUsize,
    dropped: AtomicUsize,
}

struct DropCounter(Arc<SlowCounts>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn slow_unary_call_times_out_at_the_deadline_and_resets() {
    smol::block_on(async {
        // A real HTTP/2 server that never answers within the deadline.
        let listener = smol::net::TcpListener::bind(loopback()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(SlowCounts::default());
        let executor = TestExecutor::default();
        let server_counts = counts.clone();
        let server_executor = executor.clone();
        let _server = smol::spawn(async move {
            let mut connections = Vec::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let counts = server_counts.clone();
                let service = hyper::service::service_fn(move |_request| {
                    let counts = counts.clone();
                    async move {
                        counts.received.fetch_add(1, Ordering::SeqCst);
                        let _dropped = DropCounter(counts);
                        smol::Timer::after(Duration::from_secs(30)).await;
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Empty::<bytes::Bytes>::new(),
                        ))
                    }
                });
                let connection = hyper::server::conn::http2::Builder::new(server_executor.clone())
                    .serve_connection(smol_hyper::rt::FuturesIo::new(stream), service);
                connections.push(smol::spawn(connection));
            }
        });
        let config = GrpcUpstreamConfig {
            call_timeout: Duration::from_millis(300),
            ..config(format!("http://{addr}"))
        };
        let upstream = GrpcUpstream::from_descriptors("slow", &config, descriptor_pool()).unwrap();
        let started = Instant::now();
        let failure = upstream
            .unary(HELLO, json!({"name": "x"}))
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert_eq!(failure.kind, FailureKind::Timeout, "{failure}");
        assert!(failure.message.contains("within 300 ms"), "{failure}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(1000),
            "{took:?}"
        );
        assert_eq!(counts.received.load(Ordering::SeqCst), 1);
        assert_eq!(upstream.open_streams(), 0);
        eventually(
            Duration::from_secs(2),
            "the server sees the call reset",
            || counts.dropped.load(Ordering::SeqCst) == 1,
        )
        .await;
    });
}

#[test]
fn a_silent_peer_bounds_unary_and_stream_start_by_the_call_timeout() {
    smol::block_on(async {
        // Accepts TCP connections and never says a word of HTTP/2.
        let listener = smol::net::TcpListener::bind(loopback()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _silent = smol::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                held.push(stream);
            }
        });
        let config = GrpcUpstreamConfig {
            call_timeout: Duration::from_millis(200),
            connect_timeout: Duration::from_millis(200),
            ..config(format!("http://{addr}"))
        };
        let upstream =
            GrpcUpstream::from_descriptors("silent", &config, descriptor_pool()).unwrap();
        for streaming in [false, true] {
            let started = Instant::now();
            let failure = if streaming {
                upstream
                    .server_streaming(TICKS, json!({"everyMs": 1}))
                    .await
                    .unwrap_err()
            } else {
                upstream.unary(HELLO, json!({})).await.unwrap_err()
            };
            let took = started.elapsed();
            // The handshake does not wait for the peer, so the call's own
            // deadline is what ends the wait.
            assert_eq!(failure.kind, FailureKind::Timeout, "{failure}");
            assert!(took < Duration::from_millis(1000), "{took:?}: {failure}");
            assert_eq!(upstream.open_streams(), 0);
        }
    });
}

#[test]
fn a_quiet_stream_fails_after_the_idle_bound_when_one_is_set() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        let config = GrpcUpstreamConfig {
            stream_idle_timeout: Some(Duration::from_millis(150)),
            ..config(server.endpoint())
        };
        let upstream = GrpcUpstream::from_descriptors("demo", &config, descriptor_pool()).unwrap();
        // Ticks every 20 ms stay under the bound.
        let mut lively = upstream
            .server_streaming(TICKS, json!({"everyMs": 20, "limit": 10}))
            .await
            .unwrap();
        let mut count = 0;
        while let Some(item) = lively.next().await {
            item.unwrap();
            count += 1;
        }
        assert_eq!(count, 10);
        // Ticks every 10 s do not.
        let started = Instant::now();
        let mut quiet = upstream
            .server_streaming(TICKS, json!({"everyMs": 10_000}))
            .await
            .unwrap();
        let failure = quiet.next().await.unwrap().unwrap_err();
        assert_eq!(failure.kind, FailureKind::Timeout, "{failure}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(quiet.next().await.is_none());
        assert_eq!(upstream.open_streams(), 0, "the failed stream is released");
        eventually(
            Duration::from_secs(2),
            "the upstream sees the reset",
            || server.cancelled_streams() == 1,
        )
        .await;
    });
}

/// Sends one raw `Ticks` call to the demo upstream, with `grpc-timeout` set
/// to `timeout` when given, and returns the number of messages and the
/// `grpc-status` it ended with, and how long it took. The call is cut at
/// `limit` messages (then the status is `None`).
async fn raw_ticks(
    server: &DemoUpstream,
    timeout: Option<&str>,
    limit: usize,
) -> (usize, Option<String>, Duration) {
    use http_body_util::BodyExt;
    use prost::Message as _;
    let stream = smol::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(TestExecutor::default())
            .handshake(smol_hyper::rt::FuturesIo::new(stream))
            .await
            .unwrap();
    let _connection = smol::spawn(connection);
    let message = terminus_proto::demo::v1::TicksRequest {
        every_ms: 50,
        ..Default::default()
    }
    .encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let mut request = http::Request::post(format!("http://{}/{TICKS}", server.local_addr()))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(timeout) = timeout {
        request = request.header("grpc-timeout", timeout);
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let started = Instant::now();
    let response = sender.send_request(request).await.unwrap();
    if let Some(status) = response.headers().get("grpc-status") {
        // A trailers-only answer: the status came with the headers.
        return (
            0,
            Some(status.to_str().unwrap().to_owned()),
            started.elapsed(),
        );
    }
    let mut response = response.into_body();
    let mut messages = 0;
    while let Some(frame) = response.frame().await {
        let frame = frame.unwrap();
        if frame.is_data() {
            messages += 1;
            if messages == limit {
                return (messages, None, started.elapsed());
            }
        } else if let Ok(trailers) = frame.into_trailers() {
            let status = trailers
                .get("grpc-status")
                .map(|value| value.to_str().unwrap().to_owned());
            return (messages, status, started.elapsed());
        }
    }
    (messages, None, started.elapsed())
}

#[test]
fn demo_upstream_enforces_grpc_timeout_like_a_standard_server() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        // A 300 ms deadline ends a 50 ms ticker with DEADLINE_EXCEEDED (4).
        let (messages, status, took) = raw_ticks(&server, Some("300m"), usize::MAX).await;
        assert_eq!(status.as_deref(), Some("4"), "after {messages} ticks");
        assert!((3..=7).contains(&messages), "{messages} ticks in {took:?}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        // Units other than milliseconds are read too.
        let (_, status, took) = raw_ticks(&server, Some("1S"), usize::MAX).await;
        assert_eq!(status.as_deref(), Some("4"));
        assert!(took >= Duration::from_secs(1), "{took:?}");
        // A malformed deadline is refused, as grpc-go does.
        let (messages, status, _) = raw_ticks(&server, Some("soon"), usize::MAX).await;
        assert_eq!((messages, status.as_deref()), (0, Some("3")));
        // Without one the stream runs on: 30 ticks take 1.5 s.
        let (messages, status, _) = raw_ticks(&server, None, 30).await;
        assert_eq!((messages, status), (30, None));
    });
}

#[test]
fn a_server_stream_outlives_the_call_timeout() {
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        let config = GrpcUpstreamConfig {
            call_timeout: Duration::from_millis(300),
            ..config(server.endpoint())
        };
        let upstream = GrpcUpstream::from_descriptors("demo", &config, descriptor_pool()).unwrap();
        let started = Instant::now();
        let mut stream = upstream
            .server_streaming(TICKS, json!({"everyMs": 50}))
            .await
            .unwrap();
        // Three times call_timeout, and still ticking.
        let mut seen = 0;
        while started.elapsed() < Duration::from_millis(900) {
            let tick = stream.next().await.unwrap().unwrap();
            seen += 1;
            assert_eq!(tick, json!({"seq": seen}));
        }
        assert!(seen >= 15, "{seen} ticks in {:?}", started.elapsed());
        drop(stream);
        eventually(Duration::from_secs(2), "the stream is reset", || {
            server.live_streams() == 0
        })
        .await;
        assert_eq!(upstream.open_streams(), 0);
    });
}

#[test]
fn stream_timeout_bounds_a_whole_stream_and_field_overrides_win() {
    use terminus_core::CallTimeouts;
    smol::block_on(async {
        let server = DemoUpstream::start(loopback()).await.unwrap();
        let config = GrpcUpstreamConfig {
            call_timeout: Duration::from_millis(200),
            stream_timeout: Some(Duration::from_millis(400)),
            ..config(server.endpoint())
        };
        let upstream = GrpcUpstream::from_descriptors("demo", &config, descriptor_pool()).unwrap();
        let started = Instant::now();
        let mut stream = upstream
            .server_streaming(TICKS, json!({"everyMs": 50}))
            .await
            .unwrap();
        let mut ticks = 0;
        let failure = loop {
            match stream.next().await.unwrap() {
                Ok(_) => ticks += 1,
                Err(failure) => break failure,
            }
        };
        let took = started.elapsed();
        assert_eq!(failure.kind, FailureKind::Timeout, "{failure}");
        assert!(ticks >= 4, "{ticks} ticks before the deadline");
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        assert!(stream.next().await.is_none(), "nothing follows the failure");
        // A field's own bounds replace the upstream's: no stream deadline
        // past 600 ms, and an idle bound that a 300 ms ticker trips.
        let overrides = CallTimeouts {
            stream: Some(Duration::from_secs(60)),
            idle: Some(Duration::from_millis(150)),
            ..CallTimeouts::default()
        };
        let mut quiet = upstream
            .server_streaming_with(TICKS, json!({"everyMs": 300}), overrides)
            .await
            .unwrap();
        let failure = quiet.next().await.unwrap().unwrap_err();
        assert_eq!(failure.kind, FailureKind::Timeout);
        assert!(
            failure.message.contains("sent nothing for 150 ms"),
            "{failure}"
        );
        let long = CallTimeouts {
            stream: Some(Duration::from_secs(60)),
            ..CallTimeouts::default()
        };
        let started = Instant::now();
        let mut stream = upstream
            .server_streaming_with(TICKS, json!({"everyMs": 50}), long)
            .await
            .unwrap();
        while started.elapsed() < Duration::from_millis(700) {
            stream.next().await.unwrap().unwrap();
        }
        drop((stream, quiet));
        eventually(Duration::from_secs(2), "every stream is gone", || {
            server.live_streams() == 0 && upstream.open_streams() == 0
        })
        .await;
    });
}
