//! Hot reload (runtime-smol/src/reload.rs, issue 13): the config and schema
//! are read again without closing a connection. New operations use the new
//! schema; live operations whose field and upstream remain keep running;
//! those whose field or upstream was removed end with a `SCHEMA_RELOADED`
//! error; unchanged upstream clients are kept, changed ones replaced; a
//! reload that fails changes nothing and says why (file, line) on `/admin`.
//! Through `POST /admin/reload` (with `admin.token`) in process, and
//! through SIGHUP to the real binary.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use terminus::config::Config;
use terminus::demo_upstream::DemoUpstream;
use terminus::server::Server;
use terminus_tests::*;

const TOKEN: &str = "reload-test-token";

fn field(name: &str, upstream: &str) -> String {
    format!(
        "  {name}(everyMs: Int!, limit: Int): Tick! @grpc(upstream: \"{upstream}\", method: \"terminus.demo.v1.Demo/Ticks\")\n"
    )
}

fn schema(query_fields: &str, subscription_fields: &[String]) -> String {
    format!(
        "type Query {{\n{query_fields}}}\ntype Subscription {{\n{}}}\ntype Tick {{ seq: Int! }}\n",
        subscription_fields.concat()
    )
}

const HELLO: &str = "  hello(name: String): String! @grpc(upstream: \"demo\", method: \"terminus.demo.v1.Demo/Hello\", result: \"message\")\n";
const GREET: &str = "  greet(name: String): String! @grpc(upstream: \"demo\", method: \"terminus.demo.v1.Demo/Hello\", result: \"message\")\n";

fn upstream(name: &str, endpoint: &str, extra: &str) -> String {
    format!("[grpc.{name}]\nendpoint = \"{endpoint}\"\nprotos = [\"demo.proto\"]\n{extra}\n")
}

fn config(listen: &str, upstreams: &str) -> String {
    format!(
        "listen = \"{listen}\"\nschema = \"schema.graphql\"\n[admin]\ntoken = \"{TOKEN}\"\n{upstreams}"
    )
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("terminus-reload-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.proto"),
        dir.join("demo.proto"),
    )
    .unwrap();
    dir
}

async fn reload(addr: SocketAddr) -> (u16, String) {
    http(
        addr,
        "POST",
        "/admin/reload",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    )
    .await
}

/// `series` on `/metrics` (behind `admin.token` here).
async fn gauge(addr: SocketAddr, series: &str) -> f64 {
    let (status, body) = http(
        addr,
        "GET",
        "/metrics",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    terminus::metrics::parse_value(&body, series).unwrap_or_else(|| panic!("{series} missing"))
}

async fn admin_state(addr: SocketAddr) -> Value {
    let (status, body) = http(
        addr,
        "GET",
        "/admin/state",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn post(addr: SocketAddr, query: &str) -> Value {
    let (status, body) = http(
        addr,
        "POST",
        "/graphql",
        &[("Content-Type", "application/json")],
        &json!({ "query": query }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The next `next` of subscription `id` (other ids' messages are kept out
/// of the way by giving each subscription its own connection).
async fn next_seq(client: &mut Client, id: &str) -> i64 {
    let message = client.recv().await;
    assert_eq!(message["id"], id, "{message}");
    assert_eq!(message["type"], "next", "{message}");
    message["payload"]["data"]
        .as_object()
        .and_then(|data| data.values().next())
        .and_then(|tick| tick["seq"].as_i64())
        .unwrap_or_else(|| panic!("no seq in {message}"))
}

async fn subscribed(addr: SocketAddr, field: &str) -> Client {
    let mut client = Client::ready(addr, TRANSPORT_WS).await;
    client
        .send(subscribe(
            field,
            &format!("subscription {{ {field}(everyMs: 20) {{ seq }} }}"),
        ))
        .await;
    assert_eq!(next_seq(&mut client, field).await, 1);
    client
}

#[test]
fn a_reload_keeps_connections_and_ends_only_operations_whose_field_or_upstream_went() {
    smol::block_on(async {
        let upstream_server = DemoUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let endpoint = upstream_server.endpoint();
        let dir = temp_dir("inproc");
        let three = [
            upstream("demo", &endpoint, ""),
            upstream("demo2", &endpoint, ""),
            upstream("demo3", &endpoint, ""),
        ]
        .concat();
        std::fs::write(dir.join("terminus.toml"), config("127.0.0.1:0", &three)).unwrap();
        std::fs::write(
            dir.join("schema.graphql"),
            schema(
                HELLO,
                &[
                    field("ticks", "demo"),
                    field("ticksTwo", "demo2"),
                    field("ticksThree", "demo3"),
                    field("ticksGone", "demo"),
                ],
            ),
        )
        .unwrap();
        let path = dir.join("terminus.toml");
        let running = Server::start(Config::load(&path).unwrap()).await.unwrap();
        *running.gateway().config_path.lock().unwrap() = Some(path.clone());
        let addr = running.local_addr();

        let mut kept = subscribed(addr, "ticks").await;
        let mut upstream_removed = subscribed(addr, "ticksTwo").await;
        let mut upstream_changed = subscribed(addr, "ticksThree").await;
        let mut field_removed = subscribed(addr, "ticksGone").await;
        assert_eq!(gauge(addr, "terminus_config_generation").await, 0.0);

        // Without the token the reload is refused.
        let (status, _) = http(addr, "POST", "/admin/reload", &[], "").await;
        assert_eq!(status, 401);

        // v2: demo unchanged, demo2 removed, demo3 changed; ticksGone
        // removed; ticksTwo now on demo; greet added, hello removed.
        let two = [
            upstream("demo", &endpoint, ""),
            upstream("demo3", &endpoint, "connect_timeout = \"4s\""),
        ]
        .concat();
        std::fs::write(dir.join("terminus.toml"), config("127.0.0.1:0", &two)).unwrap();
        std::fs::write(
            dir.join("schema.graphql"),
            schema(
                GREET,
                &[
                    field("ticks", "demo"),
                    field("ticksTwo", "demo"),
                    field("ticksThree", "demo3"),
                ],
            ),
        )
        .unwrap();
        let (status, body) = reload(addr).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("kept [grpc.demo]"), "{body}");
        assert!(body.contains("new or changed [grpc.demo3]"), "{body}");
        assert!(body.contains("removed [grpc.demo2]"), "{body}");

        // Removed field: one clear error, the connection stays open.
        let message = field_removed.recv().await;
        let message = if message["type"] == "next" {
            field_removed.recv().await
        } else {
            message
        };
        assert_eq!(message["type"], "error", "{message}");
        assert_eq!(
            message["payload"][0]["extensions"]["code"],
            "SCHEMA_RELOADED"
        );
        let text = message["payload"][0]["message"].as_str().unwrap();
        assert!(text.contains("Subscription.ticksGone"), "{text}");
        // Removed upstream: ends, naming it.
        let mut message = upstream_removed.recv().await;
        while message["type"] == "next" {
            message = upstream_removed.recv().await;
        }
        assert_eq!(message["type"], "error", "{message}");
        let text = message["payload"][0]["message"].as_str().unwrap();
        assert!(text.contains("\"demo2\""), "{text}");

        // Field and upstream kept (or changed: the old client drains under
        // it): the ticks go on without a gap on the same connection.
        for (client, id) in [(&mut kept, "ticks"), (&mut upstream_changed, "ticksThree")] {
            let mut last = next_seq(client, id).await;
            for _ in 0..3 {
                let seq = next_seq(client, id).await;
                assert_eq!(seq, last + 1, "{id} kept running");
                last = seq;
            }
        }
        // The connections of the ended operations are still open and take
        // new operations on the new schema.
        field_removed
            .send(subscribe(
                "again",
                "subscription { ticksGone(everyMs: 20) { seq } }",
            ))
            .await;
        let message = field_removed.recv().await;
        assert_eq!(message["type"], "error", "{message}");
        assert_eq!(
            message["payload"][0]["extensions"]["code"],
            "GRAPHQL_VALIDATION_FAILED"
        );
        field_removed
            .send(subscribe(
                "new",
                "subscription { ticksTwo(everyMs: 20, limit: 1) { seq } }",
            ))
            .await;
        assert_eq!(next_seq(&mut field_removed, "new").await, 1);
        assert_eq!(
            post(addr, "{ greet(name: \"v2\") }").await["data"]["greet"],
            "Hello, v2!"
        );
        let old = post(addr, "{ hello(name: \"v1\") }").await;
        assert!(
            old["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("hello"),
            "{old}"
        );
        assert_eq!(gauge(addr, "terminus_config_generation").await, 1.0);
        assert_eq!(gauge(addr, "terminus_connections").await, 4.0);

        // A reload that does not parse changes nothing and says where.
        std::fs::write(
            dir.join("schema.graphql"),
            "type Query {\n  greet: String!\n  broken(: Int\n}\n",
        )
        .unwrap();
        let (status, body) = reload(addr).await;
        assert_eq!(status, 422, "{body}");
        assert!(body.contains("schema.graphql:3:"), "{body}");
        let state = admin_state(addr).await;
        assert_eq!(state["reload"]["last_ok"], false, "{state}");
        assert!(
            state["reload"]["last"]
                .as_str()
                .unwrap()
                .contains("schema.graphql:3:"),
            "{state}"
        );
        assert_eq!(state["reload"]["generation"], 1);
        // A config that does not parse: file and line too.
        std::fs::write(
            dir.join("terminus.toml"),
            "listen = \"127.0.0.1:0\"\nschema = [\n",
        )
        .unwrap();
        let (status, body) = reload(addr).await;
        assert_eq!(status, 422, "{body}");
        assert!(body.contains("terminus.toml:"), "{body}");
        assert_eq!(
            gauge(addr, "terminus_reloads_total{result=\"failed\"}").await,
            2.0
        );
        // Still the v2 schema, still running.
        assert_eq!(
            post(addr, "{ greet(name: \"v2\") }").await["data"]["greet"],
            "Hello, v2!"
        );
        let mut last = next_seq(&mut kept, "ticks").await;
        let seq = next_seq(&mut kept, "ticks").await;
        assert_eq!(seq, last + 1);
        last = seq;
        assert!(last > 4);

        let report = within(WAIT, "drain", running.shutdown()).await;
        assert_eq!(report.leaked_operations, 0);
        upstream_server.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn sighup_reloads_the_real_binary_without_closing_connections() {
    let upstream_server =
        smol::block_on(DemoUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0)))).unwrap();
    let endpoint = upstream_server.endpoint();
    let dir = temp_dir("sighup");
    let path = dir.join("terminus.toml");
    std::fs::write(
        &path,
        config("127.0.0.1:0", &upstream("demo", &endpoint, "")),
    )
    .unwrap();
    std::fs::write(
        dir.join("schema.graphql"),
        schema(HELLO, &[field("ticks", "demo")]),
    )
    .unwrap();
    let mut process = Process::spawn(&["serve", "--config", path.to_str().unwrap()]);
    let addr = process.addr;
    let mut client = smol::block_on(subscribed(addr, "ticks"));
    std::fs::write(
        dir.join("schema.graphql"),
        schema(GREET, &[field("ticks", "demo")]),
    )
    .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    smol::block_on(async {
        let deadline = std::time::Instant::now() + WAIT;
        while gauge(addr, "terminus_config_generation").await != 1.0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no reload after SIGHUP"
            );
            smol::Timer::after(Duration::from_millis(50)).await;
        }
        assert_eq!(
            post(addr, "{ greet(name: \"hup\") }").await["data"]["greet"],
            "Hello, hup!"
        );
        let last = next_seq(&mut client, "ticks").await;
        assert_eq!(next_seq(&mut client, "ticks").await, last + 1);
    });
    process.terminate();
    smol::block_on(async {
        assert_eq!(client.closed().await.code, 1001);
    });
    assert!(process.wait_exit(Duration::from_secs(15)).success());
    smol::block_on(upstream_server.stop());
    let _ = std::fs::remove_dir_all(&dir);
}
