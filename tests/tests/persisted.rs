//! Issue 15, persisted queries end to end on real sockets: Apollo's
//! automatic persisted queries (a hash alone is `PERSISTED_QUERY_NOT_FOUND`,
//! a hash with its query registers it, a wrong hash is refused) on POST,
//! GET, SSE, multipart and both WebSocket subprotocols, all through the one
//! store (core/src/graphql/persisted.rs); trusted documents from a manifest
//! file; and manifest errors reported with file and line.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use terminus::config::Config;
use terminus_core::graphql::persisted::{sha256_hex, PersistedMode};
use terminus_tests::*;

const SSE: (&str, &str) = ("Accept", "text/event-stream");
const MULTIPART: (&str, &str) = ("Accept", "multipart/mixed;subscriptionSpec=\"1.0\"");
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn persisted(hash: &str) -> Value {
    json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
}

/// A GraphQL-over-HTTP body: the hash, and the query when given.
fn apq_body(query: Option<&str>, hash: &str) -> String {
    let mut body = json!({ "extensions": persisted(hash) });
    if let Some(query) = query {
        body["query"] = json!(query);
    }
    body.to_string()
}

/// A GET query string with only the hash, as Apollo's persisted-queries
/// link sends it with `useGETForHashedQueries`.
fn apq_get(hash: &str) -> String {
    let extensions = persisted(hash).to_string();
    let encoded: String = extensions
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("/graphql?extensions={encoded}")
}

fn first_error_code(value: &Value) -> &str {
    value["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {value}"))
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A whole streamed response body (the server closes: Connection: close),
/// de-chunked.
async fn streamed(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let (status, raw) = http(addr, method, path, headers, body).await;
    assert_eq!(status, 200, "{raw}");
    let mut rest = raw.as_str();
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex size");
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

#[test]
fn apq_on_post_and_get() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let addr = gateway.addr();
        let query = "{ hello(name: \"apq-post\") }";
        let hash = sha256_hex(query);

        // A hash alone, unknown: 200 with the error Apollo's link retries on.
        let (status, text) = http(addr, "POST", "/graphql", &[JSON], &apq_body(None, &hash)).await;
        assert_eq!(status, 200, "{text}");
        let answer = json_of(&text);
        assert_eq!(answer["errors"][0]["message"], "PersistedQueryNotFound");
        assert_eq!(first_error_code(&answer), "PERSISTED_QUERY_NOT_FOUND");
        // GET answers the same.
        let (status, text) = http(addr, "GET", &apq_get(&hash), &[], "").await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            first_error_code(&json_of(&text)),
            "PERSISTED_QUERY_NOT_FOUND"
        );

        // Hash and query: checked, registered, run.
        let (status, text) = http(
            addr,
            "POST",
            "/graphql",
            &[JSON],
            &apq_body(Some(query), &hash),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            json_of(&text),
            json!({"data": {"hello": "Hello, apq-post!"}})
        );

        // Now the hash alone runs, on POST and on GET.
        let (_, text) = http(addr, "POST", "/graphql", &[JSON], &apq_body(None, &hash)).await;
        assert_eq!(
            json_of(&text),
            json!({"data": {"hello": "Hello, apq-post!"}})
        );
        let (status, text) = http(addr, "GET", &apq_get(&hash), &[], "").await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            json_of(&text),
            json!({"data": {"hello": "Hello, apq-post!"}})
        );

        // A hash that is not the query's: refused, nothing runs.
        let (_, text) = http(
            addr,
            "POST",
            "/graphql",
            &[JSON],
            &apq_body(Some("{ hello(name: \"other\") }"), &hash),
        )
        .await;
        let answer = json_of(&text);
        assert_eq!(first_error_code(&answer), "PERSISTED_QUERY_HASH_MISMATCH");
        assert_eq!(
            answer["errors"][0]["message"],
            "provided sha does not match query"
        );
        // A bad version is a clear error too.
        let (_, text) = http(
            addr,
            "POST",
            "/graphql",
            &[JSON],
            &json!({"extensions": {"persistedQuery": {"version": 2, "sha256Hash": hash}}})
                .to_string(),
        )
        .await;
        assert_eq!(first_error_code(&json_of(&text)), "PERSISTED_QUERY_INVALID");
        // A plain GET (no streaming Accept) answers queries only.
        let (status, text) = http(
            addr,
            "GET",
            "/graphql?query=subscription%20%7B%20ticks(everyMs%3A%2010%2C%20limit%3A%201)%20%7B%20seq%20%7D%20%7D",
            &[],
            "",
        )
        .await;
        assert_eq!(status, 405, "{text}");
        assert_eq!(metric(addr, "terminus_operations").await, 0.0);
    });
}

#[test]
fn apq_on_sse_and_multipart() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let addr = gateway.addr();
        let query = "subscription { ticks(everyMs: 10, limit: 2) { seq } }";
        let hash = sha256_hex(query);

        // SSE: an unknown hash is a `next` with the error, then `complete`.
        let body = streamed(
            addr,
            "POST",
            "/graphql/stream",
            &[SSE, JSON],
            &apq_body(None, &hash),
        )
        .await;
        assert!(
            body.starts_with(
                "event: next\ndata: {\"errors\":[{\"message\":\"PersistedQueryNotFound\""
            ),
            "{body}"
        );
        assert!(body.contains("PERSISTED_QUERY_NOT_FOUND"), "{body}");
        assert!(body.ends_with("event: complete\ndata:\n\n"), "{body}");
        // Multipart: the error is a result (Apollo Client sees GraphQL
        // errors and its persisted-queries link retries), then the end.
        let body = streamed(
            addr,
            "POST",
            "/graphql",
            &[MULTIPART, JSON],
            &apq_body(None, &hash),
        )
        .await;
        let parts: Vec<&str> = body.split("\r\n--graphql").collect();
        assert_eq!(parts.len(), 3, "{body:?}");
        let part = json_of(
            parts[1]
                .strip_prefix("\r\ncontent-type: application/json\r\n\r\n")
                .expect("a part"),
        );
        assert_eq!(
            first_error_code(&part["payload"]),
            "PERSISTED_QUERY_NOT_FOUND"
        );
        assert_eq!(parts[2], "--\r\n");

        // Register over multipart, then the hash alone streams over SSE
        // (GET) and multipart (POST).
        let body = streamed(
            addr,
            "POST",
            "/graphql",
            &[MULTIPART, JSON],
            &apq_body(Some(query), &hash),
        )
        .await;
        assert_eq!(
            body,
            "\r\n--graphql\r\ncontent-type: application/json\r\n\r\n{\"payload\":{\"data\":{\"ticks\":{\"seq\":1}}}}\
             \r\n--graphql\r\ncontent-type: application/json\r\n\r\n{\"payload\":{\"data\":{\"ticks\":{\"seq\":2}}}}\
             \r\n--graphql--\r\n"
        );
        let body = streamed(addr, "GET", &apq_get(&hash), &[SSE], "").await;
        assert_eq!(
            body,
            "event: next\ndata: {\"data\":{\"ticks\":{\"seq\":1}}}\n\n\
             event: next\ndata: {\"data\":{\"ticks\":{\"seq\":2}}}\n\n\
             event: complete\ndata:\n\n"
        );
        let body = streamed(
            addr,
            "POST",
            "/graphql",
            &[MULTIPART, JSON],
            &apq_body(None, &hash),
        )
        .await;
        assert!(
            body.contains("{\"payload\":{\"data\":{\"ticks\":{\"seq\":2}}}}"),
            "{body}"
        );
        // A mismatch over SSE.
        let body = streamed(
            addr,
            "POST",
            "/graphql/stream",
            &[SSE, JSON],
            &apq_body(
                Some("subscription { ticks(everyMs: 10, limit: 1) { seq } }"),
                &hash,
            ),
        )
        .await;
        assert!(body.contains("PERSISTED_QUERY_HASH_MISMATCH"), "{body}");
        assert_eq!(metric(addr, "terminus_operations").await, 0.0);
        assert_eq!(metric(addr, "terminus_http_streams").await, 0.0);
    });
}

#[test]
fn apq_on_both_websocket_subprotocols() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|_| {}).await;
        let addr = gateway.addr();
        let query = "subscription { ticks(everyMs: 10, limit: 1) { seq } }";
        let hash = sha256_hex(query);
        for (protocol, start_type, next_type, error_type) in [
            (TRANSPORT_WS, "subscribe", "next", "error"),
            (LEGACY_WS, "start", "data", "error"),
        ] {
            let mut client = Client::ready(addr, protocol).await;
            // A hash alone on a fresh gateway store would be unknown; the
            // first protocol registers it, so use a per-protocol unknown one.
            let unknown = sha256_hex(&format!("{query} # {protocol}"));
            client
                .send(json!({"type": start_type, "id": "1", "payload": {"extensions": persisted(&unknown)}}))
                .await;
            let error = client.recv().await;
            assert_eq!(error["type"], error_type, "{protocol}: {error}");
            assert_eq!(error["id"], "1");
            // Both subprotocols: the payload is the errors array.
            let errors = error["payload"].clone();
            assert_eq!(
                errors[0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND",
                "{protocol}: {error}"
            );
            assert_eq!(errors[0]["message"], "PersistedQueryNotFound");

            // Hash and query (registers; a no-op the second time round).
            client
                .send(json!({"type": start_type, "id": "2", "payload": {"query": query, "extensions": persisted(&hash)}}))
                .await;
            let next = client.recv().await;
            assert_eq!(next["type"], next_type, "{protocol}: {next}");
            assert_eq!(next["payload"]["data"]["ticks"]["seq"], 1);
            assert_eq!(client.recv().await["type"], "complete");
            // The hash alone.
            client
                .send(json!({"type": start_type, "id": "3", "payload": {"extensions": persisted(&hash)}}))
                .await;
            let next = client.recv().await;
            assert_eq!(next["type"], next_type, "{protocol}: {next}");
            assert_eq!(next["payload"]["data"]["ticks"]["seq"], 1);
            assert_eq!(client.recv().await["type"], "complete");
            // A mismatch.
            client
                .send(json!({"type": start_type, "id": "4", "payload": {"query": "{ hello }", "extensions": persisted(&hash)}}))
                .await;
            let error = client.recv().await;
            assert_eq!(error["type"], error_type, "{protocol}: {error}");
            assert!(
                error.to_string().contains("PERSISTED_QUERY_HASH_MISMATCH"),
                "{error}"
            );
        }
        let (ops, ok) = wait_metric(addr, "terminus_operations", WAIT, |v| v == 0.0).await;
        assert!(ok, "{ops} operations left");
    });
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("terminus-persisted-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn trusted_documents_run_only_what_the_manifest_lists() {
    let dir = scratch("trusted");
    let listed = "subscription Listed { ticks(everyMs: 10, limit: 1) { seq } }";
    let manifest = json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [{"id": "listed-1", "name": "Listed", "type": "subscription", "body": listed}],
    });
    let file = dir.join("manifest.json");
    std::fs::write(&file, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| {
            config.persisted_queries.mode = PersistedMode::Trusted;
            config.persisted_queries.manifest = Some(file.clone());
            config
                .persisted_queries
                .load_manifest(&dir.join("terminus.toml"))
                .expect("the manifest loads");
        })
        .await;
        let addr = gateway.addr();
        // By id, over SSE.
        let body = streamed(
            addr,
            "POST",
            "/graphql/stream",
            &[SSE, JSON],
            &apq_body(None, "listed-1"),
        )
        .await;
        assert!(
            body.starts_with("event: next\ndata: {\"data\":{\"ticks\":{\"seq\":1}}}"),
            "{body}"
        );
        // By its exact text, over POST... a subscription is refused there,
        // so over multipart.
        let body = streamed(
            addr,
            "POST",
            "/graphql",
            &[MULTIPART, JSON],
            &json!({"query": listed}).to_string(),
        )
        .await;
        assert!(body.contains("\"seq\":1"), "{body}");
        // Anything else: refused with a clear error, on every transport.
        let (_, text) = http(
            addr,
            "POST",
            "/graphql",
            &[JSON],
            &json!({"query": "{ hello }"}).to_string(),
        )
        .await;
        let answer = json_of(&text);
        assert_eq!(first_error_code(&answer), "QUERY_NOT_IN_SAFELIST");
        assert!(
            answer["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("persisted_queries.manifest")),
            "{answer}"
        );
        let (_, text) = http(addr, "GET", &apq_get("unknown-id"), &[], "").await;
        assert_eq!(
            first_error_code(&json_of(&text)),
            "PERSISTED_QUERY_NOT_IN_LIST"
        );
        // APQ registration does not open the list.
        let q = "{ hello }";
        let (_, text) = http(
            addr,
            "POST",
            "/graphql",
            &[JSON],
            &apq_body(Some(q), &sha256_hex(q)),
        )
        .await;
        assert_eq!(
            first_error_code(&json_of(&text)),
            "PERSISTED_QUERY_NOT_IN_LIST"
        );
        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client.send(subscribe("1", "{ hello }")).await;
        let error = client.recv().await;
        assert_eq!(error["type"], "error");
        assert_eq!(
            error["payload"][0]["extensions"]["code"],
            "QUERY_NOT_IN_SAFELIST"
        );
        client
            .send(json!({"type": "subscribe", "id": "2", "payload": {"extensions": persisted("listed-1")}}))
            .await;
        assert_eq!(client.recv().await["payload"]["data"]["ticks"]["seq"], 1);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn manifest_errors_name_the_file_and_line() {
    let dir = scratch("errors");
    let manifest = dir.join("manifest.json");
    std::fs::write(&manifest, "{\n  \"a\": \"{ hello }\",\n  \"b\": 42\n}\n").unwrap();
    let config_path = dir.join("terminus.toml");
    let text = "schema = \"schema.graphql\"\n[persisted_queries]\nmode = \"trusted\"\nmanifest = \"manifest.json\"\n";
    let error = Config::parse(text, &config_path).expect_err("a bad manifest");
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!("{}:3:", manifest.display())),
        "{shown}"
    );
    assert!(shown.contains("persisted query manifest"), "{shown}");

    let error = Config::parse(
        "schema = \"schema.graphql\"\n[persisted_queries]\nmode = \"trusted\"\n",
        &config_path,
    )
    .expect_err("trusted without a manifest");
    assert!(
        error
            .to_string()
            .contains("needs persisted_queries.manifest"),
        "{error}"
    );
    let error = Config::parse(
        "schema = \"schema.graphql\"\n[persisted_queries]\nmode = \"allowlist\"\n",
        &config_path,
    )
    .expect_err("an unknown mode");
    assert!(error.to_string().contains(":3:"), "{error}");
    let error = Config::parse(
        "schema = \"schema.graphql\"\n[persisted_queries]\nmanifest = \"missing.json\"\n",
        &config_path,
    )
    .expect_err("a missing manifest");
    assert!(error.to_string().contains("missing.json"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
