//! Terminus's gRPC client against a gRPC server it did not write: Python
//! grpcio (tests/grpc-python/server.py), over a real loopback socket.
//!
//! Needs a Python with grpcio and grpcio-tools: `TERMINUS_PYTHON`, or the
//! venv that scripts/ci.d/30-grpc-python.sh makes at `.cache/venv`. Without
//! one the test fails; it is never skipped.

use futures_lite::StreamExt;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use terminus::grpc::{GrpcUpstream, GrpcUpstreamConfig};
use terminus_core::FailureKind;

const HELLO: &str = "terminus.demo.v1.Demo/Hello";
const TICKS: &str = "terminus.demo.v1.Demo/Ticks";
/// Generating the stubs and importing grpcio takes a few seconds on a busy
/// 2-core machine.
const STARTUP_BOUND: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Python to run the server with; panics with what to do when none is
/// set up.
fn python() -> PathBuf {
    let python = match std::env::var_os("TERMINUS_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => repo_root().join(".cache/venv/bin/python"),
    };
    let check = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools"])
        .output();
    match check {
        Ok(output) if output.status.success() => python,
        Ok(output) => panic!(
            "{} cannot import grpc and grpc_tools ({}): run scripts/ci.d/30-grpc-python.sh, \
             which installs grpcio and grpcio-tools into .cache/venv",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!(
            "no Python at {} ({error}): set TERMINUS_PYTHON or run scripts/ci.d/30-grpc-python.sh",
            python.display()
        ),
    }
}

/// The Python server process; killed when dropped.
struct PythonServer {
    child: Child,
    port: u16,
    /// The lines it printed after `LISTENING`.
    lines: mpsc::Receiver<String>,
}

impl PythonServer {
    fn start() -> PythonServer {
        PythonServer::start_with(&[])
    }

    /// Starts the server with extra arguments (`--tls-cert` and the like).
    fn start_with(extra: &[&std::ffi::OsStr]) -> PythonServer {
        let root = repo_root();
        let mut child = Command::new(python())
            .arg(root.join("tests/grpc-python/server.py"))
            .args(["--port", "0", "--max-seconds", "300", "--proto-root"])
            .arg(root.join("proto/proto"))
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting tests/grpc-python/server.py");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        // Ends when the process does (its stdout closes).
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let line = match lines.recv_timeout(STARTUP_BOUND) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the Python gRPC server did not start within {STARTUP_BOUND:?}");
            }
        };
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("the Python gRPC server said {line:?} instead of LISTENING <port>")
            });
        PythonServer { child, port, lines }
    }

    /// Waits for `count` lines equal to `expected`, failing after `bound`.
    fn expect_lines(&self, expected: &str, count: usize, bound: Duration) {
        let deadline = std::time::Instant::now() + bound;
        let mut seen = 0;
        while seen < count {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.trim() == expected => seen += 1,
                Ok(other) => panic!("the Python server printed {other:?}"),
                Err(_) => panic!("the Python server printed {expected:?} {seen} times, not {count}, within {bound:?}"),
            }
        }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn unary_and_streaming_calls_reach_python_grpcio() {
    let server = PythonServer::start();
    let config = GrpcUpstreamConfig {
        endpoint: format!("http://127.0.0.1:{}", server.port),
        protos: vec![repo_root().join("proto/proto/terminus/demo/v1/demo.proto")],
        includes: vec![repo_root().join("proto/proto")],
        call_timeout: Duration::from_secs(10),
        ..GrpcUpstreamConfig::default()
    };
    // Descriptors compiled from the .proto file at start-up, as `serve` does.
    let upstream = GrpcUpstream::new("python", &config).unwrap();
    smol::block_on(async {
        let reply = upstream.unary(HELLO, json!({"name": "Py"})).await.unwrap();
        assert_eq!(reply, json!({"message": "Hello, Py!"}));
        let reply = upstream.unary(HELLO, json!({})).await.unwrap();
        assert_eq!(reply, json!({"message": "Hello, world!"}));

        let mut ticks = upstream
            .server_streaming(TICKS, json!({"everyMs": 5, "limit": 3}))
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Some(item) = ticks.next().await {
            seen.push(item.unwrap());
        }
        assert_eq!(
            seen,
            vec![json!({"seq": 1}), json!({"seq": 2}), json!({"seq": 3})]
        );

        let mut failing = upstream
            .server_streaming(TICKS, json!({"everyMs": 5, "failAt": 2}))
            .await
            .unwrap();
        assert_eq!(failing.next().await.unwrap().unwrap(), json!({"seq": 1}));
        let failure = failing.next().await.unwrap().unwrap_err();
        assert_eq!(failure.kind, FailureKind::Failed);
        assert_eq!(failure.message, "tick 2 failed on purpose");
        assert!(failing.next().await.is_none());
        drop((ticks, failing));
        assert_eq!(upstream.open_streams(), 0);

        // Several streams at once share the one connection; dropping them
        // mid-stream frees them.
        let mut live = Vec::new();
        for _ in 0..10 {
            let mut stream = upstream
                .server_streaming(TICKS, json!({"everyMs": 20}))
                .await
                .unwrap();
            assert_eq!(stream.next().await.unwrap().unwrap(), json!({"seq": 1}));
            live.push(stream);
        }
        assert_eq!(upstream.open_streams(), 10);
        assert_eq!(upstream.open_connections(), 1);
        drop(live);
        assert_eq!(upstream.open_streams(), 0);
        // grpcio saw each of them reset (RST_STREAM), not left running.
        server.expect_lines("CANCELLED Ticks", 10, Duration::from_secs(10));
        let reply = upstream
            .unary(HELLO, json!({"name": "after"}))
            .await
            .unwrap();
        assert_eq!(reply, json!({"message": "Hello, after!"}));
        assert_eq!(upstream.open_connections(), 1);
    });
}

/// A subscription through the gateway against grpcio, which enforces
/// `grpc-timeout` on whole streams as every standard server does: it lives
/// three times `call_timeout`, and a field's own `streamTimeout` is the one
/// deadline that ends it (by grpcio's DEADLINE_EXCEEDED or the local timer,
/// whichever is first).
#[test]
fn subscriptions_against_grpcio_outlive_the_call_timeout() {
    use terminus_tests::{subscribe, Client, TRANSPORT_WS};
    let server = PythonServer::start();
    let dir = std::env::temp_dir().join(format!("terminus-stream-deadline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("schema.graphql"),
        r#"
type Query {
  hello(name: String): String @grpc(upstream: "py", method: "terminus.demo.v1.Demo/Hello", result: "message")
}
type Tick { seq: Int! }
type Subscription {
  ticks(everyMs: Int!): Tick! @grpc(upstream: "py", method: "terminus.demo.v1.Demo/Ticks")
  shortTicks(everyMs: Int!): Tick!
    @grpc(upstream: "py", method: "terminus.demo.v1.Demo/Ticks", streamTimeout: "1500ms")
}
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("terminus.toml"),
        format!(
            r#"
listen = "127.0.0.1:0"
schema = "schema.graphql"
[grpc.py]
endpoint = "http://127.0.0.1:{port}"
protos = ["{proto}"]
includes = ["{root}"]
call_timeout = "1s"
"#,
            port = server.port,
            proto = repo_root()
                .join("proto/proto/terminus/demo/v1/demo.proto")
                .display(),
            root = repo_root().join("proto/proto").display(),
        ),
    )
    .unwrap();
    let config = terminus::config::Config::load(&dir.join("terminus.toml")).unwrap();
    smol::block_on(async {
        let running = terminus::server::Server::start(config).await.unwrap();
        let mut client = Client::ready(running.local_addr(), TRANSPORT_WS).await;
        client
            .send(subscribe(
                "long",
                "subscription { ticks(everyMs: 100) { seq } }",
            ))
            .await;
        client
            .send(subscribe(
                "short",
                "subscription { shortTicks(everyMs: 100) { seq } }",
            ))
            .await;
        let started = std::time::Instant::now();
        let (mut long, mut short_error) = (0, None);
        // Three times call_timeout (1 s), and then some.
        while started.elapsed() < Duration::from_millis(3500) {
            let message = client.recv().await;
            match (message["type"].as_str(), message["id"].as_str()) {
                (Some("next"), Some("long")) => {
                    long += 1;
                    assert_eq!(
                        message["payload"]["data"]["ticks"]["seq"], long,
                        "{message}"
                    );
                    assert!(message["payload"].get("errors").is_none(), "{message}");
                }
                (Some("next"), Some("short")) => {
                    if let Some(errors) = message["payload"].get("errors") {
                        assert!(short_error.is_none(), "{message}");
                        short_error = Some((errors.clone(), started.elapsed()));
                    }
                }
                (Some("error"), Some("short")) => {
                    assert!(short_error.is_none(), "{message}");
                    short_error = Some((message["payload"].clone(), started.elapsed()));
                }
                _ => panic!("unexpected {message}"),
            }
        }
        assert!(long >= 25, "{long} ticks in 3.5 s");
        let (errors, at) = short_error.expect("the 1500 ms stream deadline ended shortTicks");
        assert_eq!(
            errors[0]["extensions"]["code"], "UPSTREAM_TIMEOUT",
            "{errors}"
        );
        assert!(
            at >= Duration::from_millis(1400) && at < Duration::from_millis(3000),
            "{at:?}"
        );
        client.send(json!({"type": "complete", "id": "long"})).await;
        // Both ended early in grpcio's eyes: one by its deadline, one reset.
        server.expect_lines("CANCELLED Ticks", 2, Duration::from_secs(10));
        drop(client);
        running.shutdown().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// gRPC over TLS to grpcio (issue 14): `https://` with the test CA, ALPN
/// h2, mutual TLS, and the three certificates a client must refuse (another
/// CA, expired, another host), each with a clear error and nothing left
/// open. Certificates are generated by rcgen for this run.
#[test]
fn tls_to_python_grpcio_verifies_the_server_and_presents_a_client_certificate() {
    use terminus::tls::ClientTlsConfig;
    let pki = terminus_tests::certs::temp_pki("grpc-python");
    let os = |p: &Path| p.as_os_str().to_owned();
    let tls_args = |pair: &terminus_tests::certs::Pair| {
        vec![
            std::ffi::OsString::from("--tls-cert"),
            os(&pair.cert),
            "--tls-key".into(),
            os(&pair.key),
        ]
    };
    let start = |args: Vec<std::ffi::OsString>| {
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        PythonServer::start_with(&refs)
    };
    // Four servers, started at once (each compiles the .proto first).
    let (good, mutual, expired, wrong_host) = std::thread::scope(|s| {
        let good = s.spawn(|| start(tls_args(&pki.server)));
        let mutual = s.spawn(|| {
            let mut args = tls_args(&pki.server);
            args.extend(["--tls-client-ca".into(), os(&pki.ca)]);
            start(args)
        });
        let expired = s.spawn(|| start(tls_args(&pki.expired)));
        let wrong_host = s.spawn(|| start(tls_args(&pki.wrong_host)));
        (
            good.join().unwrap(),
            mutual.join().unwrap(),
            expired.join().unwrap(),
            wrong_host.join().unwrap(),
        )
    });
    let upstream = |port: u16, tls: ClientTlsConfig| {
        let config = GrpcUpstreamConfig {
            endpoint: format!("https://localhost:{port}"),
            tls,
            protos: vec![repo_root().join("proto/proto/terminus/demo/v1/demo.proto")],
            includes: vec![repo_root().join("proto/proto")],
            backoff_initial: Duration::from_millis(1),
            backoff_max: Duration::from_millis(1),
            ..GrpcUpstreamConfig::default()
        };
        GrpcUpstream::new("python-tls", &config).unwrap()
    };
    let trusted = ClientTlsConfig {
        ca_file: Some(pki.ca.clone()),
        ..ClientTlsConfig::default()
    };
    let with_client_cert = ClientTlsConfig {
        cert_file: Some(pki.client.cert.clone()),
        key_file: Some(pki.client.key.clone()),
        ..trusted.clone()
    };
    smol::block_on(async {
        // Verified TLS with ALPN h2: unary and a stream.
        let secure = upstream(good.port, trusted.clone());
        let reply = secure.unary(HELLO, json!({"name": "TLS"})).await.unwrap();
        assert_eq!(reply, json!({"message": "Hello, TLS!"}));
        let mut ticks = secure
            .server_streaming(TICKS, json!({"everyMs": 5, "limit": 2}))
            .await
            .unwrap();
        assert_eq!(ticks.next().await.unwrap().unwrap(), json!({"seq": 1}));
        assert_eq!(ticks.next().await.unwrap().unwrap(), json!({"seq": 2}));
        assert!(ticks.next().await.is_none());
        assert_eq!(secure.open_connections(), 1);

        // Mutual TLS: refused without a client certificate, served with one.
        let anonymous = upstream(mutual.port, trusted.clone());
        let failure = anonymous.unary(HELLO, json!({})).await.unwrap_err();
        assert_eq!(failure.kind, FailureKind::Unavailable, "{failure:?}");
        // TLS 1.3 finishes the client's handshake before the server checks
        // the (missing) client certificate: the refusal then ends the
        // connection, whose task goes within a bound.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while anonymous.open_connections() != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the refused connection stayed open"
            );
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        let presented = upstream(mutual.port, with_client_cert.clone());
        let reply = presented
            .unary(HELLO, json!({"name": "mTLS"}))
            .await
            .unwrap();
        assert_eq!(reply, json!({"message": "Hello, mTLS!"}));

        // What a client must refuse, each with the reason.
        let cases = [
            (
                good.port,
                ClientTlsConfig {
                    ca_file: Some(pki.other_ca.clone()),
                    ..ClientTlsConfig::default()
                },
                "not signed by a trusted CA",
            ),
            (expired.port, trusted.clone(), "has expired"),
            (wrong_host.port, trusted.clone(), "not valid for the name"),
        ];
        for (port, tls, reason) in cases {
            let refused = upstream(port, tls);
            let failure = refused.unary(HELLO, json!({})).await.unwrap_err();
            assert_eq!(failure.kind, FailureKind::Unavailable);
            assert!(
                failure.message.contains(reason),
                "{reason}: {}",
                failure.message
            );
            let Err(failure) = refused.server_streaming(TICKS, json!({"everyMs": 5})).await else {
                panic!("a stream must be refused too");
            };
            assert!(failure.message.contains("TLS"), "{}", failure.message);
            assert_eq!((refused.open_connections(), refused.open_streams()), (0, 0));
        }
    });
    drop((good, mutual, expired, wrong_host));
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// Claims to gRPC metadata (issue 14): `[auth.jwt] claims_metadata` puts
/// the verified token's `sub` on every gRPC call of the caller's
/// operations, WebSocket and POST; grpcio reads it back.
#[test]
fn token_claims_reach_grpcio_as_metadata() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    use terminus_tests::{http, subscribe, Client, TRANSPORT_WS};
    const SECRET: &str = "claims-metadata-secret-claims-metadata";
    let server = PythonServer::start();
    let dir = std::env::temp_dir().join(format!("terminus-claims-md-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("schema.graphql"),
        r#"type Query {
  hello(name: String): String @grpc(upstream: "py", method: "terminus.demo.v1.Demo/Hello", result: "message")
}
"#,
    )
    .unwrap();
    std::fs::write(dir.join("secret"), SECRET).unwrap();
    std::fs::write(
        dir.join("terminus.toml"),
        format!(
            r#"
listen = "127.0.0.1:0"
schema = "schema.graphql"
[auth.jwt]
issuer = "https://issuer.test"
audience = "terminus"
secret_file = "secret"
claims_metadata = {{ sub = "x-user-id" }}
[grpc.py]
endpoint = "http://127.0.0.1:{port}"
protos = ["{proto}"]
includes = ["{root}"]
"#,
            port = server.port,
            proto = repo_root()
                .join("proto/proto/terminus/demo/v1/demo.proto")
                .display(),
            root = repo_root().join("proto/proto").display(),
        ),
    )
    .unwrap();
    let config = terminus::config::Config::load(&dir.join("terminus.toml")).unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = |sub: &str| {
        encode(
            &Header::default(),
            &json!({"iss": "https://issuer.test", "aud": "terminus", "sub": sub, "exp": exp}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    smol::block_on(async {
        let running = terminus::server::Server::start(config).await.unwrap();
        let addr = running.local_addr();
        let mut client = Client::connect(addr, &[TRANSPORT_WS]).await.unwrap();
        client
            .send(json!({"type": "connection_init", "payload": {"token": token("alice")}}))
            .await;
        assert_eq!(client.recv().await["type"], "connection_ack");
        client
            .send(subscribe("q", r#"{ hello(name: "Ada") }"#))
            .await;
        assert_eq!(
            client.recv().await["payload"]["data"]["hello"],
            "Hello, Ada! (user alice)"
        );
        let bearer = format!("Bearer {}", token("bob"));
        let (status, body) = http(
            addr,
            "POST",
            "/graphql",
            &[
                ("content-type", "application/json"),
                ("authorization", &bearer),
            ],
            &json!({"query": "{ hello }"}).to_string(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["data"]["hello"], "Hello, world! (user bob)");
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// The rooms service and the shared clock of the demo (docs/schema.md,
/// "The demo's fields") on grpcio: the same rules as the Rust demo
/// upstream, read through the gateway's gRPC client.
#[test]
fn rooms_and_the_shared_clock_on_python_grpcio_follow_the_demo_rules() {
    let server = PythonServer::start();
    let config = GrpcUpstreamConfig {
        endpoint: format!("http://127.0.0.1:{}", server.port),
        protos: vec![repo_root().join("proto/proto/terminus/demo/v1/demo.proto")],
        includes: vec![repo_root().join("proto/proto")],
        call_timeout: Duration::from_secs(10),
        ..GrpcUpstreamConfig::default()
    };
    let upstream = GrpcUpstream::new("python", &config).unwrap();
    const EVENTS: &str = "terminus.demo.v1.Rooms/Events";
    const SAY: &str = "terminus.demo.v1.Rooms/Say";
    smol::block_on(async {
        // Its headers come once it has joined the room.
        let mut a = upstream
            .server_streaming(EVENTS, json!({"name": "py"}))
            .await
            .unwrap();
        let mut b = upstream
            .server_streaming(EVENTS, json!({"name": "py"}))
            .await
            .unwrap();
        let mut other = upstream
            .server_streaming(EVENTS, json!({"name": "elsewhere"}))
            .await
            .unwrap();
        let reply = upstream
            .unary(SAY, json!({"room": "py", "text": "hi"}))
            .await
            .unwrap();
        assert_eq!(reply, json!({"ok": true, "delivered": 2}));
        let reply = upstream
            .unary(SAY, json!({"room": "elsewhere", "text": "yo"}))
            .await
            .unwrap();
        assert_eq!(reply["delivered"], 1);
        for stream in [&mut a, &mut b] {
            assert_eq!(
                stream.next().await.unwrap().unwrap(),
                json!({"room": "py", "seq": 1, "text": "hi"})
            );
        }
        assert_eq!(
            other.next().await.unwrap().unwrap(),
            json!({"room": "elsewhere", "seq": 1, "text": "yo"})
        );
        let empty = upstream
            .unary(SAY, json!({"room": "", "text": "x"}))
            .await
            .unwrap_err();
        assert_eq!(empty.kind, FailureKind::BadInput);
        assert_eq!(empty.message, "room name must not be empty");
        let long = upstream
            .unary(SAY, json!({"room": "py", "text": "t".repeat(1025)}))
            .await
            .unwrap_err();
        assert_eq!(
            long.message,
            "text is 1025 bytes, more than the 1024 allowed"
        );
        drop((a, b, other));
        // Nobody is left in "py": nothing is delivered.
        let mut delivered = 1;
        for _ in 0..100 {
            let reply = upstream
                .unary(SAY, json!({"room": "py", "text": "?"}))
                .await
                .unwrap();
            delivered = reply["delivered"].as_i64().unwrap_or(0);
            if delivered == 0 {
                break;
            }
            smol::Timer::after(Duration::from_millis(50)).await;
        }
        assert_eq!(delivered, 0, "the room outlived its subscribers");

        // Two clocks of one period carry the same seqs.
        const CLOCK: &str = "terminus.demo.v1.Demo/Clock";
        let mut first = upstream
            .server_streaming(CLOCK, json!({"everyMs": 50}))
            .await
            .unwrap();
        let mut second = upstream
            .server_streaming(CLOCK, json!({"everyMs": 50}))
            .await
            .unwrap();
        let mut seqs = [Vec::new(), Vec::new()];
        for _ in 0..4 {
            seqs[0].push(
                first.next().await.unwrap().unwrap()["seq"]
                    .as_i64()
                    .unwrap(),
            );
            seqs[1].push(
                second.next().await.unwrap().unwrap()["seq"]
                    .as_i64()
                    .unwrap(),
            );
        }
        assert!(seqs[0].windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
        assert!(
            seqs[1].iter().filter(|s| seqs[0].contains(s)).count() >= 2,
            "{seqs:?}"
        );
        let bad = upstream
            .server_streaming(CLOCK, json!({"everyMs": 0}))
            .await;
        let failure = match bad {
            Err(failure) => failure,
            Ok(mut stream) => stream.next().await.unwrap().unwrap_err(),
        };
        assert_eq!(failure.kind, FailureKind::BadInput);
    });
}
