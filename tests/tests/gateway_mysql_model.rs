//! MySQL that models real data (issue 19), through the whole gateway
//! against the real MariaDB at `TERMINUS_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`): relations batched one statement per
//! level (counted by the server's own per-user statistics), JSON columns and
//! JSON function results as JSON, exact decimals and 64-bit integers as
//! strings, ISO 8601 date-times in the configured zone, camelCase fields on
//! snake_case columns, the start-up column check, and structured errors.
//! Every test makes its own uniquely named tables and users and drops them.

use futures_lite::FutureExt;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use terminus::config::{Config, MysqlDbConfig};
use terminus::mysql::MysqlPool;
use terminus::server::{Running, Server};
use terminus::upstreams::Upstreams;
use terminus_core::graphql::Schema;
use terminus_tests::*;

fn url() -> String {
    std::env::var("TERMINUS_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// `host[:port]/database` of the test url, for urls of created users.
fn host_and_db() -> String {
    let url = url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    rest.rsplit_once('@').map_or(rest, |(_, h)| h).to_owned()
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn admin_pool() -> Arc<MysqlPool> {
    MysqlPool::new("admin", &MysqlDbConfig::new(url())).expect("valid test url")
}

fn admin_exec(pool: &MysqlPool, sql: &str) {
    smol::block_on(pool.execute(sql, &[])).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Runs its statements (drops) when the test ends, pass or fail.
struct Cleanup {
    pool: Arc<MysqlPool>,
    statements: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for statement in &self.statements {
            let _ = smol::block_on(self.pool.execute(statement, &[]));
        }
    }
}

async fn gateway(
    sdl: &str,
    url: String,
    adjust: impl FnOnce(&mut Config, &mut MysqlDbConfig),
) -> Result<Running, String> {
    let mut config = Config::with_schema(PathBuf::from("model.graphql"));
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut database = MysqlDbConfig::new(url);
    adjust(&mut config, &mut database);
    config.mysql.insert("shop".to_owned(), database);
    let schema = Schema::parse(sdl, "model.graphql").map_err(|e| e.to_string())?;
    let upstreams = Upstreams::from_config(&config)?;
    Server::start_with(config, schema, upstreams)
        .await
        .map_err(|e| e.to_string())
}

/// One query or mutation on a fresh graphql-transport-ws connection: the
/// `next` payload.
async fn run(addr: SocketAddr, query: &str) -> Value {
    let mut client = Client::ready(addr, TRANSPORT_WS).await;
    client
        .send(json!({"type": "subscribe", "id": "q", "payload": {"query": query}}))
        .await;
    let first = client.recv().await;
    assert_eq!(first["type"], "next", "{first}");
    let done = client.recv().await;
    assert_eq!(done["type"], "complete", "{done}");
    first["payload"].clone()
}

/// The shop: customers, 100 orders, 3 items each; a user of its own whose
/// statements the server counts (information_schema.USER_STATISTICS).
struct Shop {
    customers: String,
    orders: String,
    items: String,
    user: String,
    url: String,
    _cleanup: Cleanup,
}

fn shop(pool: &Arc<MysqlPool>) -> Shop {
    let customers = unique("t19_customers");
    let orders = unique("t19_orders");
    let items = unique("t19_items");
    let user = unique("t19u");
    let password = "model-pw";
    let cleanup = Cleanup {
        pool: pool.clone(),
        statements: vec![
            format!("DROP USER IF EXISTS '{user}'@'%'"),
            format!("DROP TABLE IF EXISTS {items}"),
            format!("DROP TABLE IF EXISTS {orders}"),
            format!("DROP TABLE IF EXISTS {customers}"),
        ],
    };
    admin_exec(
        pool,
        &format!(
            "CREATE TABLE {customers} (id INT PRIMARY KEY, full_name VARCHAR(50) NOT NULL, \
             balance DECIMAL(20,6) NOT NULL, big_number BIGINT UNSIGNED NOT NULL, \
             created_at DATETIME(3) NOT NULL)"
        ),
    );
    admin_exec(
        pool,
        &format!(
            "CREATE TABLE {orders} (id INT PRIMARY KEY, customer_id INT NOT NULL, \
             meta JSON, placed_at TIMESTAMP NOT NULL DEFAULT '2024-05-01 10:00:00')"
        ),
    );
    admin_exec(
        pool,
        &format!(
            "CREATE TABLE {items} (id INT PRIMARY KEY, order_id INT NOT NULL, sku VARCHAR(20) NOT NULL, \
             qty INT NOT NULL, KEY (order_id))"
        ),
    );
    admin_exec(
        pool,
        &format!(
            "INSERT INTO {customers} SELECT seq, CONCAT('Customer ', seq), \
             CONCAT('12345678901234.', LPAD(seq, 6, '0')), 18446744073709551615 - seq, \
             '2024-02-29 13:05:09.120' FROM seq_1_to_20"
        ),
    );
    admin_exec(
        pool,
        &format!(
            "INSERT INTO {orders} (id, customer_id, meta) SELECT seq, 1 + seq % 20, \
             JSON_OBJECT('gift', seq % 2 = 0, 'tags', JSON_ARRAY('a', seq)) FROM seq_1_to_100"
        ),
    );
    admin_exec(
        pool,
        &format!(
            "INSERT INTO {items} SELECT seq, 1 + (seq - 1) DIV 3, CONCAT('SKU-', seq), seq % 7 FROM seq_1_to_300"
        ),
    );
    admin_exec(
        pool,
        &format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"),
    );
    for t in [&customers, &orders, &items] {
        admin_exec(pool, &format!("GRANT SELECT ON {t} TO '{user}'@'%'"));
    }
    let url = format!("mysql://{user}:{password}@{}", host_and_db());
    Shop {
        customers,
        orders,
        items,
        user,
        url,
        _cleanup: cleanup,
    }
}

fn shop_sdl(s: &Shop) -> String {
    format!(
        r#"
type Query {{
  orders(first: Int!): [Order!]! @sql(db: "shop", query: "SELECT id, customer_id, meta, placed_at FROM {orders} ORDER BY id LIMIT :first")
  customerLines(id: Int!): CustomerLines @sql(db: "shop", query: "SELECT c.id, JSON_ARRAYAGG(JSON_OBJECT('sku', i.sku, 'qty', i.qty)) AS order_lines FROM {customers} c JOIN {orders} o ON o.customer_id = c.id JOIN {items} i ON i.order_id = o.id WHERE c.id = :id GROUP BY c.id")
}}
type Order {{
  id: ID!
  customerId: Int!
  meta: JSON
  placedAt: DateTime!
  customer: Customer @sql(db: "shop", query: "SELECT id, full_name, balance, big_number, created_at FROM {customers} WHERE id = :parent.customer_id")
  items: [Item!]! @sql(db: "shop", query: "SELECT id, order_id, sku, qty FROM {items} WHERE order_id IN (:parent.id) ORDER BY id")
}}
type Customer {{
  id: ID!
  fullName: String!
  balance: Decimal!
  bigNumber: UInt64!
  createdAt: DateTime!
}}
type Item {{
  id: ID!
  sku: String!
  qty: Int!
}}
type CustomerLines {{
  id: ID!
  orderLines: [Line!]!
}}
type Line {{
  sku: String!
  qty: Int!
}}
"#,
        orders = s.orders,
        customers = s.customers,
        items = s.items
    )
}

/// The statements user `user` has run, from the server's own counters.
fn statements_of(pool: &MysqlPool, user: &str) -> u64 {
    let rows = smol::block_on(pool.query(
        "SELECT SELECT_COMMANDS AS n FROM information_schema.USER_STATISTICS WHERE USER = ?",
        &[json!(user)],
    ))
    .expect("USER_STATISTICS");
    rows.get(0).and_then(|r| r["n"].as_u64()).unwrap_or(0)
}

#[test]
fn a_hundred_orders_with_items_and_customer_in_three_statements() {
    let pool = admin_pool();
    // Per-user statement counters (MariaDB's userstat; a dynamic setting).
    admin_exec(&pool, "SET GLOBAL userstat = 1");
    let s = shop(&pool);
    smol::block_on(async {
        let running = gateway(&shop_sdl(&s), s.url.clone(), |_, db| {
            db.time_zone = Some("UTC".into());
        })
        .await
        .expect("gateway starts");
        let addr = running.local_addr();
        let before = statements_of(&pool, &s.user);
        let result = run(
            addr,
            "{ orders(first: 100) { id customerId meta placedAt customer { id fullName balance bigNumber createdAt } items { sku qty } } }",
        )
        .await;
        let after = statements_of(&pool, &s.user);
        assert_eq!(result.get("errors"), None, "{result}");
        let orders = result["data"]["orders"].as_array().expect("orders");
        assert_eq!(orders.len(), 100);
        assert_eq!(
            after - before,
            3,
            "orders, their customers and their items: one statement per level"
        );
        for (n, order) in orders.iter().enumerate() {
            let id = n as u64 + 1;
            let customer = 1 + id % 20;
            assert_eq!(order["id"], json!(id.to_string()));
            assert_eq!(order["customerId"], json!(customer));
            assert_eq!(order["customer"]["id"], json!(customer.to_string()));
            assert_eq!(
                order["customer"]["fullName"],
                json!(format!("Customer {customer}"))
            );
            let skus: Vec<String> = (0..3)
                .map(|k| format!("SKU-{}", (id - 1) * 3 + 1 + k))
                .collect();
            let got: Vec<&str> = order["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["sku"].as_str().unwrap())
                .collect();
            assert_eq!(got, skus, "order {id}");
            assert_eq!(
                order["meta"]["gift"],
                json!(id % 2 == 0),
                "JSON column as JSON"
            );
            assert_eq!(order["meta"]["tags"], json!(["a", id]));
        }
        let first = &orders[0]["customer"];
        assert_eq!(
            first["balance"],
            json!("12345678901234.000002"),
            "exact decimal"
        );
        assert_eq!(
            first["bigNumber"],
            json!("18446744073709551613"),
            "u64 exact, as a string"
        );
        assert_eq!(first["createdAt"], json!("2024-02-29T13:05:09.120Z"));
        assert_eq!(orders[0]["placedAt"], json!("2024-05-01T10:00:00Z"));

        // The same relation twice in one document runs once: two root
        // statements and one customer statement.
        let before = statements_of(&pool, &s.user);
        let twice = run(
            addr,
            "{ a: orders(first: 100) { customer { id } } b: orders(first: 100) { id customer { fullName } } }",
        )
        .await;
        let after = statements_of(&pool, &s.user);
        assert_eq!(twice.get("errors"), None, "{twice}");
        assert_eq!(twice["data"]["b"][4]["customer"]["fullName"], "Customer 6");
        assert_eq!(after - before, 3, "identical relation statements run once");

        // JSON_ARRAYAGG nesting: MariaDB answers text, the schema wants a list.
        let lines = run(
            addr,
            "{ customerLines(id: 2) { id orderLines { sku qty } } }",
        )
        .await;
        assert_eq!(lines.get("errors"), None, "{lines}");
        let order_lines = lines["data"]["customerLines"]["orderLines"]
            .as_array()
            .expect("a list");
        assert_eq!(
            order_lines.len(),
            15,
            "5 orders of customer 2, 3 lines each"
        );
        assert!(order_lines
            .iter()
            .all(|l| l["sku"].as_str().unwrap().starts_with("SKU-")));
        running.shutdown().await;
    });
}

#[test]
fn a_field_without_a_column_stops_start_up() {
    let pool = admin_pool();
    let s = shop(&pool);
    smol::block_on(async {
        let typo = shop_sdl(&s).replace(
            "  fullName: String!\n",
            "  fullName: String!\n  nickname: String\n",
        );
        let err = gateway(&typo, url(), |_, _| {})
            .await
            .expect_err("start-up fails");
        assert!(
            err.contains("model.graphql: field Customer.nickname reads column nickname, but the statement of Order.customer returns no such column"),
            "{err}"
        );
        let bad_parent = shop_sdl(&s).replace(":parent.customer_id", ":parent.customer");
        let err = gateway(&bad_parent, url(), |_, _| {})
            .await
            .expect_err("start-up fails");
        assert!(
            err.contains("relation Order.customer keys on :parent.customer"),
            "{err}"
        );
        let no_table = shop_sdl(&s).replace(
            &format!("FROM {} ORDER BY id LIMIT", s.orders),
            "FROM t19_missing ORDER BY id LIMIT",
        );
        let err = gateway(&no_table, url(), |_, _| {})
            .await
            .expect_err("start-up fails");
        assert!(
            err.contains("field Query.orders: the statement does not prepare"),
            "{err}"
        );
    });
}

fn errors_sdl(parents: &str, table: &str) -> String {
    format!(
        r#"
type Query {{ n(id: Int!): Int @sql(db: "shop", query: "SELECT n FROM {table} WHERE id = :id") }}
type Mutation {{
  add(id: Int!, name: String!, n: Int!, parent: Int!): Int @sql(db: "shop", query: "INSERT INTO {table} (id, name, n, parent_id) VALUES (:id, :name, :n, :parent)")
  bumpQuickly(id: Int!): Int @sql(db: "shop", query: "SET STATEMENT innodb_lock_wait_timeout = 1 FOR UPDATE {table} SET n = n + 1 WHERE id = :id")
  bumpSixtyThenTwo: Int @sql(db: "shop", query: "UPDATE {table} SET n = n + 1 + SLEEP(IF(id = 60, 1.5, 0)) WHERE k IN (1, 59)")
  slow: Int @sql(db: "shop", query: "SELECT SLEEP(2) FROM {parents} LIMIT 1")
}}
"#
    )
}

fn error_tables(pool: &Arc<MysqlPool>) -> (String, String, Cleanup) {
    let parents = unique("t19_parents");
    let table = unique("t19_rows");
    let cleanup = Cleanup {
        pool: pool.clone(),
        statements: vec![
            format!("DROP TABLE IF EXISTS {table}"),
            format!("DROP TABLE IF EXISTS {parents}"),
        ],
    };
    admin_exec(
        pool,
        &format!("CREATE TABLE {parents} (id INT PRIMARY KEY) ENGINE=InnoDB"),
    );
    admin_exec(pool, &format!("INSERT INTO {parents} VALUES (1)"));
    admin_exec(
        pool,
        &format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(8) UNIQUE, n TINYINT, \
             k INT, KEY (k), parent_id INT, FOREIGN KEY (parent_id) REFERENCES {parents} (id)) ENGINE=InnoDB"
        ),
    );
    admin_exec(
        pool,
        &format!(
            "INSERT INTO {table} SELECT seq, CONCAT('r', seq), 0, 61 - seq, 1 FROM seq_1_to_60"
        ),
    );
    (parents, table, cleanup)
}

fn error_of(result: &Value) -> (&str, &Value, &Value, &str) {
    let e = &result["errors"][0];
    (
        e["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{result}")),
        &e["extensions"]["errno"],
        &e["extensions"]["sqlState"],
        e["message"].as_str().unwrap_or(""),
    )
}

#[test]
fn server_errors_have_their_own_codes_errno_and_sqlstate() {
    let pool = admin_pool();
    let (parents, table, _cleanup) = error_tables(&pool);
    smol::block_on(async {
        let running = gateway(&errors_sdl(&parents, &table), url(), |_, _| {})
            .await
            .expect("gateway starts");
        let addr = running.local_addr();

        let dup = run(
            addr,
            r#"mutation { add(id: 500, name: "r1", n: 1, parent: 1) }"#,
        )
        .await;
        let (code, errno, state, message) = error_of(&dup);
        assert_eq!(
            (code, errno, state),
            ("UPSTREAM_CONFLICT", &json!(1062), &json!("23000")),
            "{dup}"
        );
        assert!(
            message.contains("Duplicate entry"),
            "loopback listener shows the server's text: {message}"
        );

        let fk = run(
            addr,
            r#"mutation { add(id: 501, name: "x", n: 1, parent: 99) }"#,
        )
        .await;
        assert_eq!(error_of(&fk).0, "UPSTREAM_CONFLICT", "{fk}");
        assert_eq!(error_of(&fk).1, &json!(1452));

        let range = run(
            addr,
            r#"mutation { add(id: 502, name: "y", n: 1000, parent: 1) }"#,
        )
        .await;
        let (code, errno, state, _) = error_of(&range);
        assert_eq!(
            (code, errno, state),
            ("UPSTREAM_DATA_ERROR", &json!(1264), &json!("22003")),
            "{range}"
        );

        // Lock wait: a statement holds row 1's lock for 3 s.
        let holder_pool = admin_pool();
        let hold = format!("UPDATE {table} SET n = n + SLEEP(3) WHERE id = 1");
        let holder = smol::spawn(async move { holder_pool.execute(&hold, &[]).await });
        smol::Timer::after(Duration::from_millis(500)).await;
        let wait = run(addr, "mutation { bumpQuickly(id: 1) }").await;
        let (code, errno, state, _) = error_of(&wait);
        assert_eq!(
            (code, errno, state),
            ("UPSTREAM_LOCK_TIMEOUT", &json!(1205), &json!("HY000")),
            "{wait}"
        );
        holder.await.expect("the holder ends");

        // Deadlock: a heavier statement (primary key order) locks row 2,
        // changes rows 3..59 and then wants row 60; the gateway's (index
        // `k`, reverse order) locks row 60 and then wants row 2. InnoDB
        // rolls back the lighter one, the gateway's.
        let heavy_pool = admin_pool();
        let heavy =
            format!("UPDATE {table} SET n = n + 1 + SLEEP(IF(id = 2, 1.0, 0)) WHERE id >= 2");
        let heavy_task = smol::spawn(async move { heavy_pool.execute(&heavy, &[]).await });
        smol::Timer::after(Duration::from_millis(300)).await;
        let victim = run(addr, "mutation { bumpSixtyThenTwo }").await;
        let heavy_result = heavy_task.await;
        let (code, errno, state, _) = error_of(&victim);
        assert_eq!(
            (code, errno, state),
            ("UPSTREAM_DEADLOCK", &json!(1213), &json!("40001")),
            "{victim}"
        );
        heavy_result.expect("the heavy statement commits");
        running.shutdown().await;
    });
}

#[test]
fn hidden_server_messages_keep_codes_and_post_timeouts_carry_one() {
    let pool = admin_pool();
    let (parents, table, _cleanup) = error_tables(&pool);
    smol::block_on(async {
        let running = gateway(&errors_sdl(&parents, &table), url(), |config, db| {
            db.hide_server_messages = Some(true);
            config.timeouts.http_request = Duration::from_millis(300);
        })
        .await
        .expect("gateway starts");
        let addr = running.local_addr();
        let dup = run(
            addr,
            r#"mutation { add(id: 500, name: "r1", n: 1, parent: 1) }"#,
        )
        .await;
        let (code, errno, _, message) = error_of(&dup);
        assert_eq!((code, errno), ("UPSTREAM_CONFLICT", &json!(1062)));
        assert!(
            !message.contains(&table) && !message.contains("r1"),
            "{message}"
        );
        assert!(message.contains("conflicts with a constraint"), "{message}");

        let (status, body) = async {
            http(
                addr,
                "POST",
                "/graphql",
                &[("Content-Type", "application/json")],
                r#"{"query": "mutation { slow }"}"#,
            )
            .await
        }
        .or(async {
            smol::Timer::after(Duration::from_secs(10)).await;
            panic!("no answer to the POST")
        })
        .await;
        assert_eq!(status, 504, "{body}");
        let body: Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "GATEWAY_TIMEOUT",
            "{body}"
        );
        running.shutdown().await;
    });
}

/// Subscribes 300 distinct customers (`customerOrders(customer: 1..=300)`)
/// over 10 connections and waits for every first result; answers the
/// clients (subscription `c<n>` on client `(n - 1) / 30`).
async fn three_hundred_subscribers(addr: SocketAddr) -> Vec<Client> {
    let mut clients = Vec::new();
    for c in 0..10 {
        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        for k in 1..=30 {
            let n = c * 30 + k;
            client
                .send(json!({"type": "subscribe", "id": format!("c{n}"), "payload": {
                    "query": format!("subscription {{ customerOrders(customer: {n}) {{ id }} }}")
                }}))
                .await;
        }
        clients.push(client);
    }
    for client in &mut clients {
        for _ in 0..30 {
            let first = client.recv().await;
            assert_eq!(first["type"], "next", "{first}");
        }
    }
    clients
}

/// Statements per second of `user` over `window`, from the server's
/// counters.
async fn statements_per_second(pool: &MysqlPool, user: &str, window: Duration) -> f64 {
    let before = statements_of(pool, user);
    smol::Timer::after(window).await;
    let after = statements_of(pool, user);
    (after - before) as f64 / window.as_secs_f64()
}

fn live_sdl(s: &Shop, every: &str, multiplexed: bool) -> String {
    // `LIMIT` makes a statement's rows depend on the whole result, so the
    // gateway polls it per parameter set: the "before" of the benchmark.
    let limit = if multiplexed { "" } else { " LIMIT 1000" };
    format!(
        r#"{}
type Subscription {{
  customerOrders(customer: Int!): [OrderRow!]! @live(db: "shop", query: "SELECT id, customer_id FROM {} WHERE customer_id = :customer ORDER BY id{limit}", every: "{every}")
}}
type OrderRow {{ id: ID! customerId: Int! }}
"#,
        shop_sdl(s),
        s.orders
    )
}

#[test]
fn three_hundred_distinct_live_parameters_share_one_statement_per_interval() {
    let pool = admin_pool();
    admin_exec(&pool, "SET GLOBAL userstat = 1");
    let s = shop(&pool);
    admin_exec(
        &pool,
        &format!("GRANT INSERT ON {} TO '{}'@'%'", s.orders, s.user),
    );
    smol::block_on(async {
        let running = gateway(&live_sdl(&s, "1s", true), s.url.clone(), |config, _| {
            config.limits.max_operations_per_connection = 100;
        })
        .await
        .expect("gateway starts");
        let addr = running.local_addr();
        let mut clients = three_hundred_subscribers(addr).await;
        let rate = statements_per_second(&pool, &s.user, Duration::from_secs(4)).await;
        assert!(
            (0.5..=2.0).contains(&rate),
            "300 distinct parameter sets at 1 s: {rate} statements/s, expected about 1"
        );
        // Only customer 7's subscriber hears of customer 7's new order.
        admin_exec(
            &pool,
            &format!(
                "INSERT INTO {} (id, customer_id) VALUES (1000, 7)",
                s.orders
            ),
        );
        let changed = clients[0].recv().await;
        assert_eq!(changed["id"], "c7", "{changed}");
        let ids: Vec<&str> = changed["payload"]["data"]["customerOrders"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.last(), Some(&"1000"), "{changed}");
        for (i, client) in clients.iter_mut().enumerate().skip(1) {
            let quiet = async { Some(client.recv().await) }
                .or(async {
                    smol::Timer::after(Duration::from_millis(if i == 1 { 2500 } else { 10 })).await;
                    None
                })
                .await;
            assert_eq!(quiet, None, "client {i} got a message for another customer");
        }
        drop(clients);
        running.shutdown().await;
    });
}

#[test]
fn a_failing_live_poll_is_retried_and_the_subscription_survives() {
    let pool = admin_pool();
    let s = shop(&pool);
    admin_exec(
        &pool,
        &format!("GRANT ALL ON {} TO '{}'@'%'", s.orders, s.user),
    );
    smol::block_on(async {
        let running = gateway(&live_sdl(&s, "100ms", true), s.url.clone(), |_, db| {
            db.live_retries = 5;
        })
        .await
        .expect("gateway starts");
        let addr = running.local_addr();
        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client
            .send(json!({"type": "subscribe", "id": "a", "payload": {
                "query": "subscription { customerOrders(customer: 3) { id } }"
            }}))
            .await;
        let first = client.recv().await;
        assert_eq!(first["type"], "next", "{first}");
        // The table disappears for a second (fewer than the retries'
        // 7.75 s of backoff), then comes back with one more order.
        let hidden = format!("{}_away", s.orders);
        admin_exec(&pool, &format!("RENAME TABLE {} TO {hidden}", s.orders));
        smol::Timer::after(Duration::from_millis(1000)).await;
        admin_exec(
            &pool,
            &format!("INSERT INTO {hidden} (id, customer_id) VALUES (1001, 3)"),
        );
        admin_exec(&pool, &format!("RENAME TABLE {hidden} TO {}", s.orders));
        let next = client.recv().await;
        assert_eq!(next["type"], "next", "the subscription survived: {next}");
        assert!(next.to_string().contains("1001"), "{next}");
        running.shutdown().await;
    });
}

/// The numbers of docs/BENCHMARKS.md, "Multiplexed live queries": run with
/// `cargo test -p terminus-tests --test gateway_mysql_model -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_live_statements_per_second() {
    let pool = admin_pool();
    admin_exec(&pool, "SET GLOBAL userstat = 1");
    let s = shop(&pool);
    smol::block_on(async {
        for every in ["1s", "100ms"] {
            for multiplexed in [false, true] {
                let running = gateway(&live_sdl(&s, every, multiplexed), s.url.clone(), |_, _| {})
                    .await
                    .expect("gateway starts");
                let clients = three_hundred_subscribers(running.local_addr()).await;
                let rate = statements_per_second(&pool, &s.user, Duration::from_secs(10)).await;
                println!(
                    "every {every}, {}: {rate:.1} statements/s",
                    if multiplexed {
                        "multiplexed"
                    } else {
                        "per parameter set"
                    }
                );
                drop(clients);
                running.shutdown().await;
            }
        }
    });
}
