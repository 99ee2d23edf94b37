//! The documented example config (examples/terminus.toml with its schema
//! and .proto) loads and serves, and config errors name file, line, column.

use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use terminus::config::Config;
use terminus::demo_upstream::DemoUpstream;
use terminus::server::Server;
use terminus_tests::*;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/terminus.toml")
}

#[test]
fn the_example_config_serves_queries_and_subscriptions() {
    smol::block_on(async {
        let upstream = DemoUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let mut config = Config::load(&example()).expect("the example config loads");
        assert!(
            config.schema.ends_with("examples/schema.graphql"),
            "{:?}",
            config.schema
        );
        // Same config, but on free ports so tests can run side by side.
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.grpc.get_mut("demo").expect("[grpc.demo]").endpoint = upstream.endpoint();
        let running = Server::start(config)
            .await
            .expect("serves from the example config");
        let addr = running.local_addr();

        let (status, body) = http(
            addr,
            "POST",
            "/graphql",
            &[("Content-Type", "application/json")],
            &json!({"query": "query Greet($n: String) { hello(name: $n) }", "variables": {"n": "example"}}).to_string(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            json!({"data": {"hello": "Hello, example!"}})
        );

        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client
            .send(subscribe(
                "t",
                "subscription { ticks(everyMs: 5, limit: 2) { seq } }",
            ))
            .await;
        assert_eq!(client.recv().await["payload"]["data"]["ticks"]["seq"], 1);
        assert_eq!(client.recv().await["payload"]["data"]["ticks"]["seq"], 2);
        assert_eq!(client.recv().await["type"], "complete");
        let report = running.shutdown().await;
        assert_eq!(report.leaked_operations, 0);
    });
}

#[test]
fn config_and_schema_errors_name_the_file_and_line() {
    let dir = std::env::temp_dir().join(format!("terminus-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("bad.toml");
    std::fs::write(
        &config_path,
        "schema = \"s.graphql\"\n[timeouts]\ninit = 3\n",
    )
    .unwrap();
    let error = Config::load(&config_path).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("{}:3:", config_path.display())),
        "{error}"
    );

    std::fs::write(
        dir.join("s.graphql"),
        "type Query {\n  hello: String! @grpc(upstream: \"nowhere\", method: \"a.B/C\")\n}\n",
    )
    .unwrap();
    std::fs::write(&config_path, "schema = \"s.graphql\"\n").unwrap();
    let config = Config::load(&config_path).unwrap();
    let error = smol::block_on(Server::start(config))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("s.graphql") && error.contains("nowhere"),
        "{error}"
    );

    std::fs::write(dir.join("s.graphql"), "type Query {\n  hello: Strin\n").unwrap();
    let config = Config::load(&config_path).unwrap();
    let error = smol::block_on(Server::start(config))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("{}:", dir.join("s.graphql").display())),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_binary_explains_itself() {
    let output = std::process::Command::new(terminus_binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["demo", "serve", "demo-upstream"] {
        assert!(help.contains(command), "{help}");
    }
    let output = std::process::Command::new(terminus_binary())
        .args(["serve", "--config", "/nonexistent/terminus.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/terminus.toml"));
}

/// `terminus demo-upstream` as a child process; its endpoint from its
/// first output line.
struct DemoUpstreamProcess {
    child: std::process::Child,
    endpoint: String,
}

impl DemoUpstreamProcess {
    fn spawn() -> DemoUpstreamProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(terminus_binary())
            .args(["demo-upstream", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("terminus demo-upstream starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((_, endpoint)) = line.split_once(" at ") {
                    let _ = tx.send(endpoint.trim().to_owned());
                }
            }
        });
        let endpoint = rx
            .recv_timeout(WAIT)
            .expect("terminus demo-upstream prints its endpoint");
        DemoUpstreamProcess { child, endpoint }
    }
}

impl Drop for DemoUpstreamProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn terminus_serve_with_the_example_config_serves_room_say_and_clock_from_demo_upstream() {
    let upstream = DemoUpstreamProcess::spawn();
    // examples/terminus.toml as it is, on free ports: the listener and the
    // upstream's endpoint changed, its schema and .proto by absolute path.
    let examples = example().parent().unwrap().canonicalize().unwrap();
    let text = std::fs::read_to_string(example()).unwrap();
    let text = text
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("http://127.0.0.1:50051", &upstream.endpoint)
        .replace(
            "schema = \"schema.graphql\"",
            &format!("schema = {:?}", examples.join("schema.graphql")),
        )
        .replace(
            "protos = [\"demo.proto\"]",
            &format!("protos = [{:?}]", examples.join("demo.proto")),
        );
    assert!(text.contains(&upstream.endpoint) && text.contains("127.0.0.1:0"));
    let dir = std::env::temp_dir().join(format!("terminus-rooms-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("terminus.toml");
    std::fs::write(&config, text).unwrap();
    let mut gateway = Process::spawn(&["serve", "--config", config.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    let addr = gateway.addr;
    smol::block_on(async {
        // Two clock subscribers of one period get the same seqs.
        let mut a = Client::ready(addr, TRANSPORT_WS).await;
        let mut b = Client::ready(addr, TRANSPORT_WS).await;
        for client in [&mut a, &mut b] {
            client
                .send(subscribe(
                    "c",
                    "subscription { clock(everyMs: 20) { seq } }",
                ))
                .await;
        }
        let seq = |m: serde_json::Value| m["payload"]["data"]["clock"]["seq"].as_u64().unwrap();
        let mut from_a = Vec::new();
        for _ in 0..5 {
            from_a.push(seq(a.recv().await));
        }
        let mut from_b = Vec::new();
        for _ in 0..5 {
            from_b.push(seq(b.recv().await));
        }
        assert!(from_a.windows(2).all(|w| w[1] > w[0]), "{from_a:?}");
        assert!(
            from_b.iter().filter(|s| from_a.contains(s)).count() >= 3,
            "{from_a:?} {from_b:?}"
        );

        for client in [&mut a, &mut b] {
            client.send(json!({"type": "complete", "id": "c"})).await;
        }

        // A room member gets what is said there; `say` answers true.
        b.send(subscribe(
            "r",
            "subscription { room(name: \"example\") { room seq text } }",
        ))
        .await;
        let said = |text: String| {
            let body = json!({"query": "mutation Say($t: String!) { say(room: \"example\", text: $t) }", "variables": {"t": text}}).to_string();
            async move {
                let (status, body) = http(
                    addr,
                    "POST",
                    "/graphql",
                    &[("Content-Type", "application/json")],
                    &body,
                )
                .await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&body).unwrap(),
                    json!({"data": {"say": true}})
                );
            }
        };
        // The subscription reaches the upstream some time after `subscribe`
        // (this test cannot see the upstream's rooms): say until it hears.
        let mut heard = false;
        for attempt in 0..100 {
            said(format!("ping {attempt}")).await;
            let answer = futures_lite::future::or(async { Some(b.recv().await) }, async {
                smol::Timer::after(std::time::Duration::from_millis(50)).await;
                None
            })
            .await;
            if answer.is_some_and(|m| m["id"] == "r") {
                heard = true;
                break;
            }
        }
        assert!(heard, "the room subscriber never heard a say");
        said("hello, room".to_owned()).await;
        // Every event from then on, in order, up to the last one said.
        let mut events = Vec::new();
        loop {
            let message = b.recv().await;
            if message["id"] != "r" {
                continue;
            }
            let event = message["payload"]["data"]["room"].clone();
            assert_eq!(event["room"], "example");
            events.push(event.clone());
            if event["text"] == "hello, room" {
                break;
            }
        }
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{events:?}");
    });
    gateway.terminate();
    assert!(gateway.wait_exit(WAIT).success());
}
