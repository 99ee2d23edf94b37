//! The gateway in front of a real MariaDB (mysql://root@127.0.0.1:3306/test,
//! started by scripts/ci.d/25-mariadb.sh): a mutation and a query over HTTP,
//! a `@live` subscription over WebSocket that sees the change, and nothing
//! left behind when the client vanishes. The table is unique to this run and
//! dropped at the end.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use terminus::config::{Config, MysqlDbConfig};
use terminus::mysql::MysqlPool;
use terminus::server::Server;
use terminus_tests::*;

const URL: &str = "mysql://root@127.0.0.1:3306/test";

#[test]
fn sql_fields_and_live_subscriptions_through_the_gateway() {
    smol::block_on(async {
        let table = format!(
            "terminus_gw_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        let admin = MysqlPool::new("admin", &MysqlDbConfig::new(URL)).expect("pool");
        admin
            .execute(&format!("CREATE TABLE {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, text VARCHAR(200) NOT NULL)"), &[])
            .await
            .expect("MariaDB at mysql://root@127.0.0.1:3306/test (scripts/ci.d/25-mariadb.sh starts it)");

        let dir = std::env::temp_dir().join(&table);
        std::fs::create_dir_all(&dir).unwrap();
        let schema = format!(
            r#"type Query {{
  messages(limit: Int = 20): [Message!]! @sql(db: "main", query: "SELECT id, text FROM {table} ORDER BY id DESC LIMIT :limit")
}}
type Mutation {{
  postMessage(text: String!): Message! @sql(db: "main", query: "INSERT INTO {table} (text) VALUES (:text)", reselect: "SELECT id, text FROM {table} WHERE id = :lastInsertId")
}}
type Subscription {{
  messageBoard(limit: Int = 20): [Message!]! @live(db: "main", query: "SELECT id, text FROM {table} ORDER BY id DESC LIMIT :limit", every: "100ms")
}}
type Message {{ id: ID! text: String! }}
"#
        );
        std::fs::write(dir.join("schema.graphql"), schema).unwrap();
        std::fs::write(
            dir.join("terminus.toml"),
            format!("listen = \"127.0.0.1:0\"\nschema = \"schema.graphql\"\n[mysql.main]\nurl = \"{URL}\"\nmax_connections = 4\n"),
        )
        .unwrap();
        let config = Config::load(&dir.join("terminus.toml")).expect("config");
        let running = Server::start(config).await.expect("gateway starts");
        let addr: SocketAddr = running.local_addr();
        let post = |body: Value| async move {
            let (status, text) = http(
                addr,
                "POST",
                "/graphql",
                &[("Content-Type", "application/json")],
                &body.to_string(),
            )
            .await;
            assert_eq!(status, 200, "{text}");
            serde_json::from_str::<Value>(&text).unwrap()
        };

        let posted =
            post(json!({"query": "mutation { postMessage(text: \"first\") { id text } }"})).await;
        assert_eq!(posted["data"]["postMessage"]["text"], "first", "{posted}");

        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client
            .send(subscribe(
                "board",
                "subscription { messageBoard(limit: 5) { text } }",
            ))
            .await;
        let first = client.recv().await;
        assert_eq!(
            first["payload"]["data"]["messageBoard"],
            json!([{"text": "first"}]),
            "{first}"
        );

        post(json!({"query": "mutation($t: String!) { postMessage(text: $t) { id } }", "variables": {"t": "second"}})).await;
        let changed = client.recv().await;
        assert_eq!(
            changed["payload"]["data"]["messageBoard"],
            json!([{"text": "second"}, {"text": "first"}]),
            "{changed}"
        );

        let listed = post(json!({"query": "{ messages(limit: 1) { text } }"})).await;
        assert_eq!(listed, json!({"data": {"messages": [{"text": "second"}]}}));

        assert_eq!(
            metric(addr, "terminus_mysql_live_polls{db=\"main\"}").await,
            1.0
        );
        client.drop_abruptly();
        let (value, back) = wait_metric(addr, "terminus_operations", WAIT, |v| v == 0.0).await;
        assert!(back, "terminus_operations stayed at {value}");
        let (value, stopped) =
            wait_metric(addr, "terminus_mysql_live_polls{db=\"main\"}", WAIT, |v| {
                v == 0.0
            })
            .await;
        assert!(
            stopped,
            "the live poll outlived its last subscriber: {value}"
        );
        let report = within(Duration::from_secs(15), "drain", running.shutdown()).await;
        assert_eq!(report.leaked_operations, 0);

        admin
            .execute(&format!("DROP TABLE {table}"), &[])
            .await
            .expect("drop table");
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
