//! Issue 16, "no client can hurt another": hostile clients on real sockets
//! against the built `terminus` binary, whose memory is read from /proc.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use terminus::demo_upstream::DemoUpstream;
use terminus_tests::*;

/// The documented bounds (docs/security.md, "Amplified queries"): the peak
/// resident set of the gateway while 4 sockets each pipeline 100 amplified
/// introspection queries stays within this many bytes above its resident
/// set before them: with the default limits...
const AMPLIFIED_RSS_BOUND: u64 = 16 * 1024 * 1024;
/// ...and with the cost rules turned off, `max_response_bytes` alone
/// (64 KiB) bounding each answer while it is built; what remains is the
/// planned operations waiting to run, bounded by
/// `max_operations_per_connection` and `max_query_fields`.
const AMPLIFIED_RSS_BOUND_COST_RULES_OFF: u64 = 128 * 1024 * 1024;

/// A `/proc/<pid>/status` field in bytes (`VmRSS`, `VmHWM`).
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kb * 1024
}

/// 50 aliased copies of `__schema { types { name fields { name args { name } } } }`.
fn amplified_introspection() -> String {
    let mut q = String::from("{");
    for i in 0..50 {
        q.push_str(&format!(
            " s{i}: __schema {{ types {{ name fields {{ name args {{ name }} }} }} }}"
        ));
    }
    q.push('}');
    q
}

/// The example config (examples/terminus.toml's schema and .proto) on a
/// free port against `upstream`, with `limits` added to `[limits]`.
fn write_config(dir: &Path, upstream: &str, limits: &str) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let config = format!(
        "listen = \"127.0.0.1:0\"\nschema = \"{}\"\n[limits]\n{limits}\n[grpc.demo]\nendpoint = \"{upstream}\"\nprotos = [\"{}\"]\n",
        examples.join("schema.graphql").display(),
        examples.join("demo.proto").display(),
    );
    let path = dir.join(format!("hostile-{}.toml", limits.len()));
    std::fs::write(&path, config).unwrap();
    path
}

/// Four sockets each send 100 amplified queries at once and read every
/// answer; returns the terminal messages' error codes (or "complete") and
/// the gateway's RSS growth at its peak.
async fn amplify(process: &Process) -> (Vec<String>, u64) {
    let pid = process.child.id();
    let addr: SocketAddr = process.addr;
    // Warm up what any first query allocates, then take the baseline.
    let mut warm = Client::ready(addr, TRANSPORT_WS).await;
    warm.send(subscribe("w", "{ __schema { queryType { name } } }"))
        .await;
    assert_eq!(warm.recv().await["type"], "next");
    assert_eq!(warm.recv().await["type"], "complete");
    drop(warm);
    let before = proc_status_bytes(pid, "VmRSS");
    let query = amplified_introspection();
    let clients = (0..4).map(|_| {
        let query = query.clone();
        smol::spawn(async move {
            let mut client = Client::ready(addr, TRANSPORT_WS).await;
            for i in 0..100 {
                client.send(subscribe(&format!("q{i}"), &query)).await;
            }
            let mut ends = Vec::new();
            while ends.len() < 100 {
                let m = client.recv().await;
                match m["type"].as_str() {
                    Some("error") => ends.push(
                        m["payload"][0]["extensions"]["code"]
                            .as_str()
                            .unwrap_or("?")
                            .to_owned(),
                    ),
                    Some("complete") => ends.push("complete".into()),
                    Some("next") => {}
                    other => panic!("unexpected {other:?}: {m}"),
                }
            }
            ends
        })
    });
    let mut ends = Vec::new();
    for c in clients.collect::<Vec<_>>() {
        ends.extend(within(Duration::from_secs(60), "400 answers", c).await);
    }
    let peak = proc_status_bytes(pid, "VmHWM");
    (ends, peak.saturating_sub(before))
}

#[test]
fn amplified_introspection_on_four_sockets_keeps_rss_bounded() {
    smol::block_on(async {
        let upstream = DemoUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("terminus-hostile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();

        // Default limits: refused by the cost rules before anything is built.
        let config = write_config(&dir, &upstream.endpoint(), "");
        let process = Process::spawn(&["serve", "--config", config.to_str().unwrap()]);
        let (ends, growth) = amplify(&process).await;
        assert_eq!(ends.len(), 400);
        assert!(
            ends.iter().all(|c| c == "GRAPHQL_VALIDATION_FAILED"),
            "{ends:?}"
        );
        eprintln!("defaults: RSS grew by {} KiB at its peak", growth / 1024);
        assert!(growth < AMPLIFIED_RSS_BOUND, "RSS grew by {growth} bytes");
        drop(process);

        // The cost rules out of the way: every answer is built, and stopped
        // by max_response_bytes as it grows.
        let config = write_config(
            &dir,
            &upstream.endpoint(),
            "max_query_schema_fields = 50\nmax_query_cost = 1000000000\nmax_response_bytes = 65536",
        );
        let process = Process::spawn(&["serve", "--config", config.to_str().unwrap()]);
        let (ends, growth) = amplify(&process).await;
        assert_eq!(ends.len(), 400);
        assert!(ends.iter().all(|c| c == "RESPONSE_TOO_LARGE"), "{ends:?}");
        eprintln!(
            "cost rules off: RSS grew by {} KiB at its peak",
            growth / 1024
        );
        assert!(
            growth < AMPLIFIED_RSS_BOUND_COST_RULES_OFF,
            "RSS grew by {growth} bytes"
        );
        drop(process);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn legacy_starts_queued_before_the_init_are_counted_in_terminus_operations() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let addr = gateway.addr();
        let mut client = Client::connect(addr, &[LEGACY_WS]).await.expect("connects");
        for id in ["1", "2", "3"] {
            client
                .send(start(id, "subscription { ticks(everyMs: 50) { seq } }"))
                .await;
        }
        let (value, ok) = wait_metric(addr, "terminus_operations", WAIT, |v| v == 3.0).await;
        assert!(ok, "terminus_operations is {value} with 3 queued starts");
        // A stop of a queued start: it never runs, and is no longer counted.
        client
            .send(serde_json::json!({"type": "stop", "id": "3"}))
            .await;
        let (value, ok) = wait_metric(addr, "terminus_operations", WAIT, |v| v == 2.0).await;
        assert!(ok, "terminus_operations is {value} after a stop");
        client
            .send(serde_json::json!({"type": "connection_init", "payload": {}}))
            .await;
        assert_eq!(client.recv().await["type"], "connection_ack");
        let mut data = 0;
        while data < 2 {
            let m = client.recv().await;
            if m["type"] == "data" {
                data += 1;
            }
        }
        assert_eq!(metric(addr, "terminus_operations").await, 2.0);
        client.drop_abruptly();
        let (value, ok) = wait_metric(addr, "terminus_operations", WAIT, |v| v == 0.0).await;
        assert!(ok, "terminus_operations is {value} after the client left");
    });
}

/// Writes `request` on a fresh socket and reads what comes back within
/// `limit` (until the server closes, or `limit` passes).
async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
    let mut stream = smol::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let read = async { Some(stream.read(&mut buf).await) }
            .or(async {
                smol::Timer::after(left).await;
                None
            })
            .await;
        match read {
            Some(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn a_declared_body_over_the_limit_gets_413_at_once_and_head_is_answered() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let addr = gateway.addr();
        let started = std::time::Instant::now();
        let answer = raw_exchange(
            addr,
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{",
            Duration::from_secs(5),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("max_http_body_bytes"), "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "413 after {:?}",
            started.elapsed()
        );
        // The streaming transports read their body by the same rule
        // (runtime-smol/src/request.rs).
        let started = std::time::Instant::now();
        let answer = raw_exchange(
            addr,
            b"POST /graphql/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{",
            Duration::from_secs(5),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("max_http_body_bytes"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(2));

        for path in ["/healthz", "/readyz", "/metrics", "/admin"] {
            let request = format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let answer = raw_exchange(addr, request.as_bytes(), Duration::from_secs(5)).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "HEAD {path}: {answer}");
            let (head, body) = answer.split_once("\r\n\r\n").expect("a header block");
            assert!(body.is_empty(), "HEAD {path} has a body: {body:?}");
            assert!(
                head.to_ascii_lowercase().contains("content-type"),
                "HEAD {path}: {head}"
            );
        }
        let answer = raw_exchange(
            addr,
            b"HEAD /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    });
}

fn upgrade_request(key: &str, origin: Option<&str>) -> String {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    format!(
        "GET /graphql HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n{origin}\r\n"
    )
}

#[test]
fn upgrades_check_the_key_and_the_origin_allow_list() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| {
            config.auth.allowed_origins = vec!["https://app.example.com".into()];
        })
        .await;
        let addr = gateway.addr();
        let good_key = "dGhlIHNhbXBsZSBub25jZQ==";
        let status = |answer: String| answer.get(9..12).unwrap_or_default().to_owned();
        let ask = |key: &'static str, origin: Option<&'static str>| async move {
            raw_exchange(
                addr,
                upgrade_request(key, origin).as_bytes(),
                Duration::from_millis(500),
            )
            .await
        };
        assert_eq!(
            status(ask(good_key, Some("https://app.example.com")).await),
            "101"
        );
        assert_eq!(status(ask(good_key, None).await), "101");
        let refused = ask(good_key, Some("https://evil.example")).await;
        assert_eq!(status(refused.clone()), "403", "{refused}");
        assert!(refused.contains("allowed_origins"), "{refused}");
        for key in ["short", "!!!!", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            assert_eq!(status(ask(key, None).await), "400", "key {key:?}");
        }
    });
}
