//! Issue 15 end to end, in process on real sockets: GraphQL over SSE
//! (graphql-sse, distinct connections mode) and multipart HTTP
//! subscriptions (`multipart/mixed;subscriptionSpec="1.0"`), spoken as raw
//! HTTP/1.1 on a TcpStream so the exact wire format is checked: events,
//! completion, errors, keep-alives, auth, and a client that goes away
//! mid-stream (its operation and upstream stream end at once), plus 500 SSE
//! subscribers dropped at once.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use serde_json::Value;
use smol::net::TcpStream;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use terminus_tests::*;

const SSE: (&str, &str) = ("Accept", "text/event-stream");
const MULTIPART: (&str, &str) = ("Accept", "multipart/mixed;subscriptionSpec=\"1.0\"");
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// How soon a client's departure must show as zero operations and streams.
const PROMPTLY: Duration = Duration::from_secs(1);

fn body(query: &str) -> String {
    serde_json::json!({ "query": query }).to_string()
}

/// Writes one request on a fresh socket and returns the socket.
async fn open(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("write");
    stream
}

/// A whole response: status, lower-cased head, and the de-chunked body.
struct Whole {
    status: u16,
    head: String,
    body: String,
}

/// Reads until the server closes (Connection: close) and de-chunks.
async fn whole(mut stream: TcpStream) -> Whole {
    let mut raw = Vec::new();
    within(WAIT, "the whole response", stream.read_to_end(&mut raw))
        .await
        .expect("read");
    let raw = String::from_utf8(raw).expect("utf-8");
    let (head, rest) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Whole { status, head, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").expect("chunk CRLF");
    }
}

/// Reads from `stream` until the raw bytes so far contain `marker`.
async fn read_until(stream: &mut TcpStream, marker: &str) -> String {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    within(WAIT, marker, async {
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before {marker:?}: {}",
                String::from_utf8_lossy(&raw)
            );
            raw.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&raw).contains(marker) {
                return String::from_utf8_lossy(&raw).into_owned();
            }
        }
    })
    .await
}

fn ticks(extra: &str) -> String {
    format!("subscription {{ ticks(everyMs: 10{extra}) {{ seq }} }}")
}

/// SSE `next` events' data, in order, from a whole body.
fn sse_data(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|event| event.strip_prefix("event: next\ndata: "))
        .map(|data| serde_json::from_str(data).expect("JSON data"))
        .collect()
}

async fn back_to_zero(gateway: &DemoGateway) {
    let addr = gateway.addr();
    let (ops, ok) = wait_metric(addr, "terminus_operations", PROMPTLY, |v| v == 0.0).await;
    assert!(ok, "terminus_operations still {ops} after {PROMPTLY:?}");
    let (streams, ok) =
        wait_metric(addr, "terminus_upstream_streams", PROMPTLY, |v| v == 0.0).await;
    assert!(ok, "terminus_upstream_streams still {streams}");
    let deadline = Instant::now() + PROMPTLY;
    while gateway.upstream.live_streams() != 0 {
        assert!(
            Instant::now() < deadline,
            "the demo upstream still has {} live streams after {PROMPTLY:?}",
            gateway.upstream.live_streams()
        );
        smol::Timer::after(Duration::from_millis(20)).await;
    }
}

#[test]
fn sse_wire_format_completion_and_errors() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let addr = gateway.addr();

        // POST on /graphql/stream: two ticks, then complete.
        let response = whole(
            open(
                addr,
                "POST",
                "/graphql/stream",
                &[SSE, JSON],
                &body(&ticks(", limit: 2")),
            )
            .await,
        )
        .await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert!(
            response
                .head
                .contains("content-type: text/event-stream; charset=utf-8"),
            "{}",
            response.head
        );
        assert!(response.head.contains("cache-control: no-cache"));
        assert_eq!(
            response.body,
            "event: next\ndata: {\"data\":{\"ticks\":{\"seq\":1}}}\n\n\
             event: next\ndata: {\"data\":{\"ticks\":{\"seq\":2}}}\n\n\
             event: complete\ndata:\n\n"
        );

        // GET with query parameters, content-negotiated on /graphql.
        let response = whole(
            open(
                addr,
                "GET",
                "/graphql?query=%7B+hello%28name%3A+%22Ada%22%29+%7D",
                &[SSE],
                "",
            )
            .await,
        )
        .await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(
            response.body,
            "event: next\ndata: {\"data\":{\"hello\":\"Hello, Ada!\"}}\n\nevent: complete\ndata:\n\n"
        );

        // An upstream failure: the error is a `next` with `errors`, then
        // complete.
        let response = whole(
            open(
                addr,
                "POST",
                "/graphql/stream",
                &[SSE, JSON],
                &body(&ticks(", failAt: 2")),
            )
            .await,
        )
        .await;
        assert_eq!(response.status, 200);
        let data = sse_data(&response.body);
        assert_eq!(data.len(), 2, "{}", response.body);
        assert_eq!(data[0]["data"]["ticks"]["seq"], 1);
        assert!(
            data[1]["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{}",
            response.body
        );
        assert!(response.body.ends_with("event: complete\ndata:\n\n"));

        // A validation error is reported through the accepted stream.
        let response = whole(
            open(
                addr,
                "POST",
                "/graphql/stream",
                &[SSE, JSON],
                &body("subscription { nope }"),
            )
            .await,
        )
        .await;
        assert_eq!(response.status, 200);
        let data = sse_data(&response.body);
        assert!(data[0]["errors"][0]["message"].is_string(), "{data:?}");
        assert!(response.body.ends_with("event: complete\ndata:\n\n"));

        // A malformed request is a plain 400.
        let (status, text) = http(
            addr,
            "POST",
            "/graphql/stream",
            &[SSE, JSON],
            "{\"query\": 1}",
        )
        .await;
        assert_eq!(status, 400, "{text}");
        // On /graphql a JSON type listed first keeps the JSON answer.
        let (status, text) = http(
            addr,
            "POST",
            "/graphql",
            &[("Accept", "application/json, text/event-stream"), JSON],
            &body("{ hello(name: \"Ada\") }"),
        )
        .await;
        assert_eq!(
            (status, text.as_str()),
            (200, "{\"data\":{\"hello\":\"Hello, Ada!\"}}")
        );
        // Without a streaming Accept, /graphql/stream says what it serves.
        let (status, _) = http(addr, "POST", "/graphql/stream", &[JSON], "{}").await;
        assert_eq!(status, 406);
        assert_eq!(metric(addr, "terminus_operations").await, 0.0);
        assert_eq!(metric(addr, "terminus_http_streams").await, 0.0);
    });
}

#[test]
fn multipart_wire_format_completion_and_errors() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let addr = gateway.addr();
        let response = whole(
            open(
                addr,
                "POST",
                "/graphql",
                &[MULTIPART, JSON],
                &body(&ticks(", limit: 2")),
            )
            .await,
        )
        .await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert!(
            response.head.contains(
                "content-type: multipart/mixed;boundary=\"graphql\";subscriptionspec=\"1.0\""
            ),
            "{}",
            response.head
        );
        assert_eq!(
            response.body,
            "\r\n--graphql\r\ncontent-type: application/json\r\n\r\n{\"payload\":{\"data\":{\"ticks\":{\"seq\":1}}}}\
             \r\n--graphql\r\ncontent-type: application/json\r\n\r\n{\"payload\":{\"data\":{\"ticks\":{\"seq\":2}}}}\
             \r\n--graphql--\r\n"
        );

        // An upstream failure: top-level errors with a null payload, then
        // the final boundary.
        let response = whole(
            open(
                addr,
                "POST",
                "/graphql",
                &[MULTIPART, JSON],
                &body(&ticks(", failAt: 2")),
            )
            .await,
        )
        .await;
        let parts: Vec<&str> = response.body.split("\r\n--graphql").collect();
        assert_eq!(parts.len(), 4, "{:?}", response.body);
        let error: Value = serde_json::from_str(
            parts[2]
                .strip_prefix("\r\ncontent-type: application/json\r\n\r\n")
                .expect("a part"),
        )
        .expect("JSON");
        assert_eq!(error["payload"], Value::Null, "{error}");
        assert!(error["errors"].as_array().is_some_and(|e| !e.is_empty()));
        assert_eq!(parts[3], "--\r\n");
        assert_eq!(metric(addr, "terminus_operations").await, 0.0);
    });
}

#[test]
fn keepalives_at_the_configured_interval() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| {
            config.timeouts.stream_keepalive = Duration::from_millis(50);
        })
        .await;
        let addr = gateway.addr();
        let slow = body("subscription { ticks(everyMs: 1000) { seq } }");
        let mut sse = open(addr, "POST", "/graphql/stream", &[SSE, JSON], &slow).await;
        let seen = read_until(&mut sse, ":\n\n").await;
        assert!(!seen.contains("event: next"), "{seen}");
        let mut multipart = open(addr, "POST", "/graphql", &[MULTIPART, JSON], &slow).await;
        let seen = read_until(
            &mut multipart,
            "\r\n--graphql\r\ncontent-type: application/json\r\n\r\n{}",
        )
        .await;
        assert!(!seen.contains("payload"), "{seen}");
        drop((sse, multipart));
        back_to_zero(&gateway).await;
    });
}

#[test]
fn auth_is_the_same_as_post() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| {
            config.auth.tokens = vec!["s3cret".to_owned()];
        })
        .await;
        let addr = gateway.addr();
        let query = body(&ticks(", limit: 1"));
        for accept in [SSE, MULTIPART] {
            let refused =
                whole(open(addr, "POST", "/graphql", &[accept, JSON], &query).await).await;
            assert_eq!(refused.status, 401, "{}", refused.body);
            assert!(refused.body.contains("UNAUTHENTICATED"), "{}", refused.body);
            let wrong = ("Authorization", "Bearer nope");
            let refused =
                whole(open(addr, "POST", "/graphql", &[accept, JSON, wrong], &query).await).await;
            assert_eq!(refused.status, 401);
            let good = ("Authorization", "Bearer s3cret");
            let served =
                whole(open(addr, "POST", "/graphql", &[accept, JSON, good], &query).await).await;
            assert_eq!(served.status, 200, "{}", served.body);
            assert!(served.body.contains("\"seq\":1"), "{}", served.body);
        }
        assert!(metric(addr, "terminus_auth_rejected_total").await >= 4.0);
        assert_eq!(metric(addr, "terminus_operations").await, 0.0);
    });
}

#[test]
fn a_client_that_goes_away_ends_its_operation_at_once() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let addr = gateway.addr();
        let endless = body("subscription { ticks(everyMs: 50) { seq } }");
        for (accept, path, marker) in [
            (SSE, "/graphql/stream", "event: next"),
            (MULTIPART, "/graphql", "payload"),
        ] {
            let mut stream = open(addr, "POST", path, &[accept, JSON], &endless).await;
            read_until(&mut stream, marker).await;
            assert_eq!(metric(addr, "terminus_operations").await, 1.0);
            assert_eq!(metric(addr, "terminus_upstream_streams").await, 1.0);
            assert_eq!(gateway.upstream.live_streams(), 1);
            let cancelled = gateway.upstream.cancelled_streams();
            let gone = Instant::now();
            drop(stream);
            back_to_zero(&gateway).await;
            eprintln!(
                "{path}: operation and upstream stream gone after {:?}",
                gone.elapsed()
            );
            assert_eq!(
                gateway.upstream.cancelled_streams(),
                cancelled + 1,
                "the upstream saw the stream reset"
            );
        }
        assert_eq!(metric(addr, "terminus_http_streams").await, 0.0);
    });
}

#[test]
fn max_http_streams_is_enforced() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| {
            config.limits.max_http_streams = 1;
        })
        .await;
        let addr = gateway.addr();
        let endless = body("subscription { ticks(everyMs: 50) { seq } }");
        let mut first = open(addr, "POST", "/graphql/stream", &[SSE, JSON], &endless).await;
        read_until(&mut first, "event: next").await;
        let (status, text) = http(addr, "POST", "/graphql/stream", &[SSE, JSON], &endless).await;
        assert_eq!(status, 503, "{text}");
        assert!(text.contains("max_http_streams"), "{text}");
        drop(first);
        back_to_zero(&gateway).await;
        let (_, ok) = wait_metric(addr, "terminus_http_streams", PROMPTLY, |v| v == 0.0).await;
        assert!(ok);
    });
}

#[test]
fn five_hundred_sse_subscribers_dropped_at_once() {
    const CLIENTS: usize = 500;
    const BACK_TO_BASELINE: Duration = Duration::from_secs(2);
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let addr = gateway.addr();
        let (status, text) = http(
            addr,
            "POST",
            "/graphql",
            &[JSON],
            &body("{ hello(name: \"warm\") }"),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let baseline_tasks = metric(addr, "terminus_tasks").await;
        let baseline_fds = metric(addr, "process_open_fds").await;
        let query = body("subscription { ticks(everyMs: 100) { seq } }");
        let mut pending = Vec::with_capacity(CLIENTS);
        for _ in 0..CLIENTS {
            let query = query.clone();
            pending.push(smol::spawn(async move {
                let mut stream = open(addr, "POST", "/graphql/stream", &[SSE, JSON], &query).await;
                read_until(&mut stream, "event: next").await;
                stream
            }));
        }
        let mut clients = Vec::with_capacity(CLIENTS);
        for task in pending {
            clients.push(within(WAIT * 3, "500 SSE subscriptions", task).await);
        }
        assert_eq!(metric(addr, "terminus_operations").await, CLIENTS as f64);
        assert_eq!(metric(addr, "terminus_http_streams").await, CLIENTS as f64);
        assert_eq!(metric(addr, "terminus_connections").await, CLIENTS as f64);
        assert_eq!(gateway.upstream.live_streams(), CLIENTS);
        drop(clients);
        let dropped = Instant::now();
        loop {
            let last = [
                (
                    "terminus_operations",
                    metric(addr, "terminus_operations").await,
                    0.0,
                ),
                (
                    "terminus_http_streams",
                    metric(addr, "terminus_http_streams").await,
                    0.0,
                ),
                (
                    "terminus_upstream_streams",
                    metric(addr, "terminus_upstream_streams").await,
                    0.0,
                ),
                (
                    "terminus_connections",
                    metric(addr, "terminus_connections").await,
                    0.0,
                ),
                (
                    "demo upstream live streams",
                    gateway.upstream.live_streams() as f64,
                    0.0,
                ),
                (
                    "terminus_tasks",
                    metric(addr, "terminus_tasks").await,
                    baseline_tasks,
                ),
                (
                    "process_open_fds",
                    metric(addr, "process_open_fds").await,
                    baseline_fds,
                ),
            ];
            if last.iter().all(|(_, value, baseline)| value <= baseline) {
                eprintln!(
                    "500 SSE subscribers: back to baseline after {:?}: {last:?}",
                    dropped.elapsed()
                );
                break;
            }
            assert!(
                dropped.elapsed() < BACK_TO_BASELINE,
                "not back to baseline within {BACK_TO_BASELINE:?}: {last:?}"
            );
            smol::Timer::after(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn drain_ends_streams_with_no_operation_leaked() {
    smol::block_on(async {
        let DemoGateway { running, upstream } = DemoGateway::start(|config| {
            config.timeouts.drain = Duration::from_secs(5);
        })
        .await;
        let addr = running.local_addr();
        let endless = body("subscription { ticks(everyMs: 50) { seq } }");
        let mut sse = open(addr, "POST", "/graphql/stream", &[SSE, JSON], &endless).await;
        read_until(&mut sse, "event: next").await;
        let mut multipart = open(addr, "POST", "/graphql", &[MULTIPART, JSON], &endless).await;
        read_until(&mut multipart, "payload").await;
        assert_eq!(metric(addr, "terminus_connections").await, 2.0);
        let report = within(WAIT, "the drain", running.shutdown()).await;
        assert_eq!(report.leaked_operations, 0, "{report:?}");
        assert_eq!(report.forced_connections, 0, "{report:?}");
        assert!(report.took < Duration::from_secs(2), "{report:?}");
        // Each response ended without a terminal event: the client
        // reconnects instead of taking the subscription as complete.
        for mut stream in [sse, multipart] {
            let mut rest = Vec::new();
            within(WAIT, "the response's end", stream.read_to_end(&mut rest))
                .await
                .expect("read");
            let rest = String::from_utf8_lossy(&rest);
            assert!(!rest.contains("event: complete"), "{rest}");
            assert!(!rest.contains("--graphql--"), "{rest}");
        }
        let deadline = Instant::now() + PROMPTLY;
        while upstream.live_streams() != 0 {
            assert!(
                Instant::now() < deadline,
                "upstream streams left after drain"
            );
            smol::Timer::after(Duration::from_millis(20)).await;
        }
    });
}
