//! End-to-end tests of the Terminus gateway against real peers.
//!
//! This library holds what the tests under `tests/` share: starting the
//! gateway (in-process on port 0, or the built binary), a WebSocket client
//! speaking either subprotocol on a real socket, and a `/metrics` scraper.

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use serde_json::{json, Value};
use smol::net::TcpStream;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
pub mod certs;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use terminus::config::Config;
use terminus::demo_upstream::DemoUpstream;
use terminus::server::{Running, Server};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The newer subprotocol.
pub const TRANSPORT_WS: &str = "graphql-transport-ws";
/// The legacy subprotocol.
pub const LEGACY_WS: &str = "graphql-ws";

/// Awaits `future` for at most `limit`, panicking with `what` after that.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl std::future::Future<Output = T>,
) -> T {
    async { Some(future.await) }
        .or(async {
            smol::Timer::after(limit).await;
            None
        })
        .await
        .unwrap_or_else(|| panic!("timed out after {limit:?} waiting for {what}"))
}

/// The demo gateway running in this process: a demo gRPC upstream on a
/// loopback port and the gateway in front of it on port 0.
pub struct DemoGateway {
    /// The gateway.
    pub running: Running,
    /// The demo gRPC upstream.
    pub upstream: DemoUpstream,
}

impl DemoGateway {
    /// Starts both, letting `adjust` change the gateway's config first.
    pub async fn start(adjust: impl FnOnce(&mut Config)) -> DemoGateway {
        DemoGateway::start_with_mysql(None, adjust).await
    }

    /// Starts both, with the MySQL demo fields on `mysql_url` when given.
    pub async fn start_with_mysql(
        mysql_url: Option<&str>,
        adjust: impl FnOnce(&mut Config),
    ) -> DemoGateway {
        let upstream = DemoUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("demo upstream starts");
        let (mut config, schema, upstreams) = terminus::run::demo_parts(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream.endpoint(),
            mysql_url,
        )
        .await
        .expect("demo parts");
        adjust(&mut config);
        let running = Server::start_with(config, schema, upstreams)
            .await
            .expect("gateway starts");
        DemoGateway { running, upstream }
    }

    /// Starts both with the demo schema changed by `schema` (it gets the
    /// demo SDL and returns the SDL to serve), letting `adjust` change the
    /// gateway's config.
    pub async fn start_with_schema(
        schema: impl FnOnce(&str) -> String,
        adjust: impl FnOnce(&mut Config),
    ) -> DemoGateway {
        let upstream = DemoUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("demo upstream starts");
        let (mut config, _, upstreams) = terminus::run::demo_parts(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream.endpoint(),
            None,
        )
        .await
        .expect("demo parts");
        adjust(&mut config);
        let sdl = schema(terminus_core::graphql::demo::SCHEMA_SDL);
        let schema = terminus_core::graphql::Schema::parse(&sdl, "test.graphql")
            .unwrap_or_else(|e| panic!("test schema: {e}"));
        let running = Server::start_with(config, schema, upstreams)
            .await
            .expect("gateway starts");
        DemoGateway { running, upstream }
    }

    /// The gateway's address.
    pub fn addr(&self) -> SocketAddr {
        self.running.local_addr()
    }
}

/// A WebSocket client on a real socket.
pub struct Client {
    socket: WebSocketStream<TcpStream>,
    /// The subprotocol the server chose.
    pub protocol: String,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code (1006 when the socket ended without a close frame).
    pub code: u16,
    /// The close reason.
    pub reason: String,
}

impl Client {
    /// Opens `ws://addr/graphql` offering `protocols`.
    pub async fn connect(addr: SocketAddr, protocols: &[&str]) -> Result<Client, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut request = format!("ws://{addr}/graphql")
            .into_client_request()
            .map_err(|e| e.to_string())?;
        if !protocols.is_empty() {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(&protocols.join(", ")).map_err(|e| e.to_string())?,
            );
        }
        let (socket, response) = async_tungstenite::client_async(request, stream)
            .await
            .map_err(|e| e.to_string())?;
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Client { socket, protocol })
    }

    /// Connects with `protocol` and completes `connection_init` / ack
    /// (skipping the legacy protocol's first `ka`).
    pub async fn ready(addr: SocketAddr, protocol: &str) -> Client {
        let mut client = Client::connect(addr, &[protocol]).await.expect("connects");
        assert_eq!(client.protocol, protocol);
        client
            .send(json!({"type": "connection_init", "payload": {}}))
            .await;
        let ack = client.recv().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        client
    }

    /// Sends one JSON text frame.
    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    /// Sends one raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        within(WAIT, "a send", self.socket.send(Message::text(text)))
            .await
            .expect("send");
    }

    /// The next JSON text message, skipping legacy `ka` keep-alives.
    /// Panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        match self.next_message().await {
            Ok(value) => value,
            Err(closed) => panic!("connection closed while waiting for a message: {closed:?}"),
        }
    }

    /// The next JSON text message (skipping `ka`), or how the socket closed.
    pub async fn next_message(&mut self) -> Result<Value, Closed> {
        loop {
            let frame = within(WAIT, "a message", self.socket.next()).await;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let value: Value =
                        serde_json::from_str(text.as_str()).expect("server sends JSON");
                    if value["type"] == "ka" {
                        continue;
                    }
                    return Ok(value);
                }
                Some(Ok(Message::Close(frame))) => return Err(closed(frame)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    return Err(Closed {
                        code: 1006,
                        reason: String::new(),
                    })
                }
            }
        }
    }

    /// Waits for the server to close the connection; returns how.
    /// Messages before the close are skipped.
    pub async fn closed(&mut self) -> Closed {
        loop {
            if let Err(closed) = self.next_message().await {
                return closed;
            }
        }
    }

    /// Answers the server's close frame (after [`Self::closed`]): the
    /// closing handshake's second half. tungstenite writes its queued answer
    /// on the next read, which then waits for the server to end the TCP
    /// connection.
    pub async fn answer_close(&mut self) {
        let _ = within(WAIT, "answering the close", self.socket.next()).await;
    }

    /// Reads the raw TCP socket until the server ends it (EOF or reset),
    /// without answering anything; returns how long that took. Panics after
    /// `limit`.
    pub async fn tcp_end(&mut self, limit: Duration) -> Duration {
        let started = Instant::now();
        let stream = self.socket.get_mut();
        let ended = async {
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        };
        within(limit, "the server to end the TCP connection", ended).await;
        started.elapsed()
    }

    /// Drops the TCP socket with no close frame: an abrupt disconnect.
    pub fn drop_abruptly(self) {
        drop(self.socket.into_inner());
    }
}

fn closed(frame: Option<CloseFrame>) -> Closed {
    match frame {
        Some(frame) => Closed {
            code: u16::from(frame.code),
            reason: frame.reason.to_string(),
        },
        None => Closed {
            code: 1005,
            reason: String::new(),
        },
    }
}

/// A `subscribe` (graphql-transport-ws) message.
pub fn subscribe(id: &str, query: &str) -> Value {
    json!({"type": "subscribe", "id": id, "payload": {"query": query}})
}

/// A `start` (graphql-ws) message.
pub fn start(id: &str, query: &str) -> Value {
    json!({"type": "start", "id": id, "payload": {"query": query}})
}

/// One HTTP/1.1 request on a fresh socket; returns (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    };
    within(WAIT, "an HTTP response", exchange).await
}

/// The value of `series` on the gateway's `/metrics`; panics when absent.
pub async fn metric(addr: SocketAddr, series: &str) -> f64 {
    metric_opt(addr, series)
        .await
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
}

/// The value of `series` on the gateway's `/metrics`, if it is there
/// (labelled counters appear once they are first counted).
pub async fn metric_opt(addr: SocketAddr, series: &str) -> Option<f64> {
    let (status, body) = http(addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    terminus::metrics::parse_value(&body, series)
}

/// Polls `series` until `check` accepts it or `limit` passes; returns the
/// last value and whether it was accepted.
pub async fn wait_metric(
    addr: SocketAddr,
    series: &str,
    limit: Duration,
    check: impl Fn(f64) -> bool,
) -> (f64, bool) {
    let deadline = Instant::now() + limit;
    loop {
        let value = metric_opt(addr, series).await.unwrap_or(0.0);
        if check(value) {
            return (value, true);
        }
        if Instant::now() >= deadline {
            return (value, false);
        }
        smol::Timer::after(Duration::from_millis(50)).await;
    }
}

/// The `terminus` binary built next to this test (target/<profile>/terminus).
pub fn terminus_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/terminus
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = profile_dir.join("terminus");
    assert!(
        binary.exists(),
        "{} does not exist: build it first with `cargo build -p terminus`",
        binary.display()
    );
    binary
}

/// The `terminus` binary running as a child process.
pub struct Process {
    /// The child.
    pub child: Child,
    /// The gateway's address, read from its first output line.
    pub addr: SocketAddr,
}

impl Process {
    /// Runs `terminus <args>` and waits for its "listening on" line.
    pub fn spawn(args: &[&str]) -> Process {
        let mut child = Command::new(terminus_binary())
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("terminus starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let rest = line
                    .strip_prefix("terminus listening on http://")
                    .or_else(|| line.strip_prefix("terminus listening on https://"));
                if let Some(rest) = rest {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(WAIT)
            .expect("terminus prints its address")
            .parse()
            .expect("address parses");
        Process { child, addr }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "terminus did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
