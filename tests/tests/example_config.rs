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
