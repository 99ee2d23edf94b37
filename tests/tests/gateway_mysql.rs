//! `@sql` and `@live` fields through the whole gateway: real WebSocket
//! clients against the gateway started in-process on port 0, and the real
//! MariaDB (or MySQL) at `TERMINUS_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`). Every test creates uniquely named
//! tables (and users) and drops them at its end, pass or fail.

use futures_lite::FutureExt;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};
use terminus::config::{Config, MysqlDbConfig};
use terminus::mysql::MysqlPool;
use terminus::server::{Running, Server};
use terminus::upstreams::Upstreams;
use terminus_core::graphql::Schema;
use terminus_tests::*;

/// The leak test counts process-wide fds and tasks, so it runs alone: it
/// takes this lock exclusively, every other test takes it shared.
static PROCESS_WIDE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    PROCESS_WIDE.read().unwrap_or_else(|e| e.into_inner())
}

fn alone() -> RwLockWriteGuard<'static, ()> {
    PROCESS_WIDE.write().unwrap_or_else(|e| e.into_inner())
}

fn url() -> String {
    std::env::var("TERMINUS_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// A name no other test (or concurrent run) uses.
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

/// A pool of the test's own, for setting up, checking and cleaning up.
fn admin_pool() -> Arc<MysqlPool> {
    MysqlPool::new("admin", &MysqlDbConfig::new(url())).expect("valid test url")
}

/// Runs `sql` on the admin pool.
fn admin(pool: &MysqlPool, sql: &str, params: &[Value]) -> Value {
    smol::block_on(pool.query(sql, params)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Drops its table (and user) when the test ends, pass or fail.
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

/// A table created for one test, dropped with the returned guard.
fn table(pool: &Arc<MysqlPool>, prefix: &str, columns: &str) -> (String, Cleanup) {
    let name = unique(prefix);
    smol::block_on(pool.execute(&format!("CREATE TABLE {name} ({columns})"), &[]))
        .expect("create table");
    let cleanup = Cleanup {
        pool: pool.clone(),
        statements: vec![format!("DROP TABLE IF EXISTS {name}")],
    };
    (name, cleanup)
}

/// The gateway in this process on port 0, serving `sdl` against the
/// database `db` configured from `url` and changed by `adjust`.
async fn gateway(
    sdl: &str,
    db: &str,
    url: String,
    adjust: impl FnOnce(&mut MysqlDbConfig),
) -> Running {
    let mut config = Config::with_schema(PathBuf::from("gateway_mysql.graphql"));
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut database = MysqlDbConfig::new(url);
    adjust(&mut database);
    config.mysql.insert(db.to_owned(), database);
    let schema = Schema::parse(sdl, "gateway_mysql.graphql").expect("test schema parses");
    let upstreams = Upstreams::from_config(&config).expect("upstreams");
    Server::start_with(config, schema, upstreams)
        .await
        .expect("gateway starts")
}

/// A graphql-transport-ws `subscribe` with variables.
fn operation(id: &str, query: &str, variables: Value) -> Value {
    json!({"type": "subscribe", "id": id, "payload": {"query": query, "variables": variables}})
}

/// Runs one query or mutation on a fresh connection; answers the `next`
/// payload (`{data, errors?}`), or `{"errors": [...]}` for an `error`.
async fn run(addr: SocketAddr, query: &str, variables: Value) -> Value {
    let mut client = Client::ready(addr, TRANSPORT_WS).await;
    client.send(operation("q", query, variables)).await;
    let first = client.recv().await;
    match first["type"].as_str() {
        Some("next") => {
            let done = client.recv().await;
            assert_eq!(done["type"], "complete", "{done}");
            first["payload"].clone()
        }
        Some("error") => json!({"errors": first["payload"]}),
        _ => panic!("unexpected answer {first}"),
    }
}

/// The `extensions.code` of the first error of a result.
fn first_code(result: &Value) -> &str {
    result["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {result}"))
}

/// The next message within `limit`, or None when none came.
async fn message_within(client: &mut Client, limit: Duration) -> Option<Value> {
    async { Some(client.recv().await) }
        .or(async {
            smol::Timer::after(limit).await;
            None
        })
        .await
}

/// Statements on the server whose text contains `marker`, other than the
/// asking session.
fn running_with(pool: &MysqlPool, marker: &str) -> u64 {
    let rows = admin(
        pool,
        "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST \
         WHERE INFO LIKE CONCAT('%', ?, '%') AND ID <> CONNECTION_ID()",
        &[json!(marker)],
    );
    rows[0]["n"].as_u64().unwrap_or_else(|| panic!("{rows}"))
}

/// Polls `check` every 50 ms until it holds, for at most `limit`.
async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        smol::Timer::after(Duration::from_millis(50)).await;
    }
}

fn notes_sdl(table: &str) -> String {
    format!(
        r#"
type Query {{
  notes(body: String!): [Note!]! @sql(db: "db", query: "SELECT id, body, n FROM {table} WHERE body = :body ORDER BY id")
  allNotes: [Note!]! @sql(db: "db", query: "SELECT id, body, n FROM {table} ORDER BY id")
  noteCount: Int! @sql(db: "db", query: "SELECT COUNT(*) FROM {table}")
}}
type Mutation {{
  addNote(body: String!, n: Int): Note!
    @sql(db: "db", query: "INSERT INTO {table} (body, n) VALUES (:body, :n)",
         reselect: "SELECT id, body, n FROM {table} WHERE id = :lastInsertId")
  removeNotes(body: String!): Changed! @sql(db: "db", query: "DELETE FROM {table} WHERE body = :body")
}}
type Subscription {{
  board: [Note!]! @live(db: "db", query: "SELECT id, body, n FROM {table} ORDER BY id", every: "100ms")
}}
type Note {{ id: ID! body: String! n: Int }}
type Changed {{ affectedRows: Int! lastInsertId: ID }}
"#
    )
}

const SLOW_SDL: &str = r#"
type Query {
  slow(seconds: Float!): Int! @sql(db: "db", query: "SELECT SLEEP(:seconds) AS slept")
}
"#;

#[test]
fn sql_query_and_mutation_bind_arguments_as_values() {
    let _shared = shared();
    let pool = admin_pool();
    let (table, _cleanup) = table(
        &pool,
        "gw_notes",
        "id BIGINT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(200) NOT NULL, n INT NULL",
    );
    smol::block_on(async {
        let running = gateway(&notes_sdl(&table), "db", url(), |_| {}).await;
        let addr = running.local_addr();
        let add = "mutation($body: String!, $n: Int) { addNote(body: $body, n: $n) { id body n } }";

        let first = run(addr, add, json!({"body": "hello", "n": 7})).await;
        assert!(first.get("errors").is_none(), "{first}");
        assert_eq!(first["data"]["addNote"]["body"], "hello");
        assert_eq!(first["data"]["addNote"]["n"], 7);
        let first_id = first["data"]["addNote"]["id"].clone();

        // An injection attempt as an argument is stored as the text it is.
        let attack = format!("x'); DROP TABLE {table}; --");
        let second = run(addr, add, json!({"body": attack})).await;
        assert_eq!(
            second["data"]["addNote"]["body"],
            attack.as_str(),
            "{second}"
        );
        assert_eq!(second["data"]["addNote"]["n"], Value::Null);
        assert_ne!(second["data"]["addNote"]["id"], first_id);

        // ...and as a filter it matches nothing instead of everything.
        let query = "query($body: String!) { notes(body: $body) { id body } }";
        let none = run(addr, query, json!({"body": "' OR '1'='1"})).await;
        assert_eq!(none["data"]["notes"], json!([]), "{none}");
        let exact = run(addr, query, json!({"body": attack})).await;
        assert_eq!(
            exact["data"]["notes"][0]["body"],
            attack.as_str(),
            "{exact}"
        );

        let all = run(addr, "{ allNotes { body n } noteCount }", json!({})).await;
        assert_eq!(
            all["data"],
            json!({"allNotes": [{"body": "hello", "n": 7}, {"body": attack, "n": null}], "noteCount": 2})
        );

        // A mutation without reselect answers affected rows.
        let removed = run(
            addr,
            "mutation($body: String!) { removeNotes(body: $body) { affectedRows } }",
            json!({"body": "hello"}),
        )
        .await;
        assert_eq!(
            removed["data"]["removeNotes"]["affectedRows"], 1,
            "{removed}"
        );
        let count = run(addr, "{ noteCount }", json!({})).await;
        assert_eq!(count["data"]["noteCount"], 1);

        // HTTP POST runs @sql fields the same way.
        let (status, body) = http(
            addr,
            "POST",
            "/graphql",
            &[("Content-Type", "application/json")],
            r#"{"query":"query($b: String!) { notes(body: $b) { n } noteCount }","variables":{"b":"hello"}}"#,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).expect("JSON answer");
        assert_eq!(body["data"], json!({"notes": [], "noteCount": 1}), "{body}");

        // /metrics has the pool's series.
        assert!(metric(addr, "terminus_mysql_queries_total{db=\"db\"}").await >= 7.0);
        assert!(metric(addr, "terminus_mysql_connections{db=\"db\",state=\"idle\"}").await >= 1.0);
        assert!(
            metric(
                addr,
                "terminus_mysql_query_duration_seconds_count{db=\"db\"}"
            )
            .await
                >= 7.0
        );
        running.shutdown().await;
    });
}

#[test]
fn a_schema_naming_an_unconfigured_database_does_not_start() {
    let _shared = shared();
    smol::block_on(async {
        let mut config = Config::with_schema(PathBuf::from("gateway_mysql.graphql"));
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let schema = Schema::parse(SLOW_SDL, "gateway_mysql.graphql").unwrap();
        let upstreams = Upstreams::from_config(&config).unwrap();
        let err = Server::start_with(config, schema, upstreams)
            .await
            .expect_err("must not start");
        assert!(err.to_string().contains("[mysql.db]"), "{err}");
    });
}

#[test]
fn an_exhausted_pool_answers_upstream_busy_within_the_acquire_timeout() {
    let _shared = shared();
    smol::block_on(async {
        let running = gateway(SLOW_SDL, "db", url(), |db| {
            db.max_connections = 1;
            db.acquire_timeout = Duration::from_millis(300);
        })
        .await;
        let addr = running.local_addr();
        // One slow query holds the only connection.
        let mut holder = Client::ready(addr, TRANSPORT_WS).await;
        holder
            .send(operation(
                "slow",
                "query($s: Float!) { slow(seconds: $s) }",
                json!({"s": 5}),
            ))
            .await;
        let (_, busy) = wait_metric(
            addr,
            "terminus_mysql_connections{db=\"db\",state=\"busy\"}",
            WAIT,
            |v| v == 1.0,
        )
        .await;
        assert!(busy, "the slow query never took the connection");

        let asked = Instant::now();
        let result = run(addr, "{ slow(seconds: 0) }", json!({})).await;
        assert_eq!(first_code(&result), "UPSTREAM_BUSY", "{result}");
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "answered after {:?}",
            asked.elapsed()
        );
        assert!(metric(addr, "terminus_mysql_acquire_timeouts_total{db=\"db\"}").await >= 1.0);

        // Cancelling the holder frees the connection at once.
        holder.send(json!({"type": "complete", "id": "slow"})).await;
        let after = run(addr, "{ slow(seconds: 0) }", json!({})).await;
        assert_eq!(after["data"]["slow"], 0, "{after}");
        running.shutdown().await;
    });
}

#[test]
fn a_statement_past_its_timeout_fails_with_upstream_timeout() {
    let _shared = shared();
    smol::block_on(async {
        let running = gateway(SLOW_SDL, "db", url(), |db| {
            db.statement_timeout = Duration::from_millis(500);
        })
        .await;
        let addr = running.local_addr();
        let asked = Instant::now();
        let result = run(addr, "{ slow(seconds: 30) }", json!({})).await;
        assert_eq!(first_code(&result), "UPSTREAM_TIMEOUT", "{result}");
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );
        // The pool still works afterwards.
        let after = run(addr, "{ slow(seconds: 0) }", json!({})).await;
        assert_eq!(after["data"]["slow"], 0, "{after}");
        running.shutdown().await;
    });
}

#[test]
fn a_cancelled_operation_kills_its_query_on_the_server() {
    let _shared = shared();
    let pool = admin_pool();
    let marker = unique("gw_cancel_marker");
    let sdl = format!(
        r#"type Query {{ slow(seconds: Float!): Int! @sql(db: "db", query: "SELECT SLEEP(:seconds) AS {marker}") }}"#
    );
    smol::block_on(async {
        let running = gateway(&sdl, "db", url(), |_| {}).await;
        let addr = running.local_addr();
        let query = "query($s: Float!) { slow(seconds: $s) }";

        // Cancelled by `complete`.
        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client.send(operation("a", query, json!({"s": 30}))).await;
        eventually(WAIT, "the query runs", || running_with(&pool, &marker) == 1).await;
        client.send(json!({"type": "complete", "id": "a"})).await;
        eventually(
            Duration::from_secs(3),
            "the completed query is killed",
            || running_with(&pool, &marker) == 0,
        )
        .await;

        // Cancelled by the socket dying without a close frame.
        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client.send(operation("b", query, json!({"s": 30}))).await;
        eventually(WAIT, "the query runs", || running_with(&pool, &marker) == 1).await;
        client.drop_abruptly();
        eventually(
            Duration::from_secs(3),
            "the orphaned query is killed",
            || running_with(&pool, &marker) == 0,
        )
        .await;

        assert!(metric(addr, "terminus_mysql_kills_total{db=\"db\"}").await >= 2.0);
        let (_, idle_again) = wait_metric(
            addr,
            "terminus_mysql_connections{db=\"db\",state=\"busy\"}",
            WAIT,
            |v| v == 0.0,
        )
        .await;
        assert!(idle_again, "connections stay busy after the kills");
        running.shutdown().await;
    });
}

#[test]
fn live_emits_on_change_only_and_identical_subscriptions_share_one_poll() {
    let _shared = shared();
    const SUBSCRIBERS: usize = 5;
    let pool = admin_pool();
    let (table, _cleanup) = table(
        &pool,
        "gw_live",
        "id BIGINT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(200) NOT NULL, n INT NULL",
    );
    smol::block_on(async {
        let running = gateway(&notes_sdl(&table), "db", url(), |_| {}).await;
        let addr = running.local_addr();
        let mut clients = Vec::new();
        for i in 0..SUBSCRIBERS {
            let mut client = Client::ready(addr, TRANSPORT_WS).await;
            client
                .send(subscribe(
                    &format!("live{i}"),
                    "subscription { board { body } }",
                ))
                .await;
            let first = client.recv().await;
            assert_eq!(first["payload"]["data"]["board"], json!([]), "{first}");
            clients.push(client);
        }
        assert_eq!(
            metric(addr, "terminus_mysql_live_polls{db=\"db\"}").await,
            1.0
        );
        let (status, state) = http(addr, "GET", "/admin/state", &[], "").await;
        assert_eq!(status, 200);
        let state: Value = serde_json::from_str(&state).expect("admin state is JSON");
        assert_eq!(state["mysql"][0]["db"], "db", "{state}");
        assert_eq!(state["mysql"][0]["live_polls"], 1, "{state}");

        // Polls every 100 ms, shared: about 10 statements a second in all,
        // not 10 per subscriber. Nothing changed, so nothing is sent.
        let before = metric(addr, "terminus_mysql_queries_total{db=\"db\"}").await;
        for client in &mut clients {
            let quiet = message_within(client, Duration::from_millis(250)).await;
            assert!(quiet.is_none(), "sent without a change: {quiet:?}");
        }
        let polled = metric(addr, "terminus_mysql_queries_total{db=\"db\"}").await - before;
        assert!(
            (1.0..=20.0).contains(&polled),
            "{polled} statements in ~1.25 s for {SUBSCRIBERS} identical subscriptions"
        );

        // A change reaches every subscriber once.
        let added = run(
            addr,
            "mutation { addNote(body: \"new\") { id } }",
            json!({}),
        )
        .await;
        assert!(added.get("errors").is_none(), "{added}");
        for client in &mut clients {
            let next = client.recv().await;
            assert_eq!(
                next["payload"]["data"]["board"],
                json!([{"body": "new"}]),
                "{next}"
            );
            let quiet = message_within(client, Duration::from_millis(300)).await;
            assert!(quiet.is_none(), "sent again without a change: {quiet:?}");
        }

        // The last subscriber leaving stops the poll.
        drop(clients);
        let (_, stopped) = wait_metric(addr, "terminus_mysql_live_polls{db=\"db\"}", WAIT, |v| {
            v == 0.0
        })
        .await;
        assert!(stopped, "the shared poll outlived its subscribers");
        running.shutdown().await;
    });
}

#[test]
fn three_hundred_abrupt_live_disconnects_leave_nothing_behind() {
    let _alone = alone();
    const CLIENTS: usize = 300;
    const DISTINCT: usize = 10;
    const POOL: usize = 4;
    const BACK_TO_BASELINE: Duration = Duration::from_secs(5);
    let pool = admin_pool();
    let (table, mut cleanup) = table(
        &pool,
        "gw_leak",
        "id BIGINT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(200) NOT NULL, n INT NULL",
    );
    // The gateway logs in as a user of its own, so SHOW PROCESSLIST tells
    // its connections apart from everyone else's.
    let user = unique("gw_leak_user");
    let password = "leak-test-pw";
    admin(
        &pool,
        &format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"),
        &[],
    );
    cleanup
        .statements
        .push(format!("DROP USER IF EXISTS '{user}'@'%'"));
    admin(
        &pool,
        &format!("GRANT SELECT, INSERT ON {table} TO '{user}'@'%'"),
        &[],
    );
    let base = url();
    let host_and_db = base
        .split_once('@')
        .map_or("127.0.0.1:3306/test", |(_, r)| r);
    let gateway_url = format!("mysql://{user}:{password}@{host_and_db}");
    let sdl = format!(
        r#"
type Query {{ count: Int! @sql(db: "db", query: "SELECT COUNT(*) FROM {table}") }}
type Subscription {{
  board(limit: Int!): [Note!]! @live(db: "db", query: "SELECT id, body FROM {table} ORDER BY id LIMIT :limit", every: "200ms")
}}
type Note {{ id: ID! body: String! }}
"#
    );
    let gateway_connections = || {
        let rows = admin(
            &pool,
            "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER = ?",
            &[json!(user)],
        );
        rows[0]["n"].as_u64().unwrap_or_else(|| panic!("{rows}"))
    };
    smol::block_on(async {
        let running = gateway(&sdl, "db", gateway_url, |db| {
            db.max_connections = POOL;
        })
        .await;
        let addr = running.local_addr();
        let warm = run(addr, "{ count }", json!({})).await;
        assert_eq!(warm["data"]["count"], 0, "{warm}");
        let pool_connections = |addr| async move {
            metric(addr, "terminus_mysql_connections{db=\"db\",state=\"idle\"}").await
                + metric(addr, "terminus_mysql_connections{db=\"db\",state=\"busy\"}").await
        };
        let baseline_fds = metric(addr, "process_open_fds").await;
        let baseline_connections = pool_connections(addr).await;
        let baseline_tasks = metric(addr, "terminus_tasks").await;

        let mut pending = Vec::with_capacity(CLIENTS);
        for i in 0..CLIENTS {
            pending.push(smol::spawn(async move {
                let mut client = Client::ready(addr, TRANSPORT_WS).await;
                let query = format!(
                    "subscription {{ board(limit: {}) {{ id }} }}",
                    i % DISTINCT + 1
                );
                client.send(subscribe("live", &query)).await;
                let first = client.recv().await;
                assert_eq!(first["payload"]["data"]["board"], json!([]), "{first}");
                client
            }));
        }
        let mut clients = Vec::with_capacity(CLIENTS);
        for task in pending {
            clients.push(within(WAIT * 3, "300 live subscriptions", task).await);
        }
        assert_eq!(metric(addr, "terminus_operations").await, CLIENTS as f64);
        assert_eq!(
            metric(addr, "terminus_mysql_live_polls{db=\"db\"}").await,
            DISTINCT as f64
        );
        assert!(gateway_connections() as usize <= POOL + 1);

        for client in clients {
            client.drop_abruptly();
        }
        let dropped = Instant::now();
        loop {
            let operations = metric(addr, "terminus_operations").await;
            let polls = metric(addr, "terminus_mysql_live_polls{db=\"db\"}").await;
            let tasks = metric(addr, "terminus_tasks").await;
            let connections = pool_connections(addr).await;
            // Pooled connections kept idle may differ from the baseline's
            // (each is one fd), and one kill session may have been opened
            // for polls cancelled mid-statement.
            let fds_allowed = baseline_fds + (connections - baseline_connections).max(0.0) + 1.0;
            let fds = metric(addr, "process_open_fds").await;
            let server_side = gateway_connections();
            let done = operations == 0.0
                && polls == 0.0
                && tasks <= baseline_tasks
                && connections <= POOL as f64
                && fds <= fds_allowed
                && server_side as usize <= POOL + 1;
            if done {
                break;
            }
            assert!(
                dropped.elapsed() < BACK_TO_BASELINE,
                "not back to baseline after {BACK_TO_BASELINE:?}: operations {operations}, live polls {polls}, \
                 tasks {tasks} (baseline {baseline_tasks}), pooled connections {connections}, \
                 fds {fds} (allowed {fds_allowed}), server-side sessions {server_side}"
            );
            smol::Timer::after(Duration::from_millis(50)).await;
        }
        running.shutdown().await;
    });
}

#[test]
fn demo_with_mysql_serves_the_message_board() {
    let _shared = shared();
    let pool = admin_pool();
    // A database of its own, so the demo's fixed table name is unique here.
    let database = unique("gw_demo");
    admin(&pool, &format!("CREATE DATABASE {database}"), &[]);
    let _cleanup = Cleanup {
        pool: pool.clone(),
        statements: vec![format!("DROP DATABASE IF EXISTS {database}")],
    };
    let base = url();
    let server = base
        .rsplit_once('/')
        .map_or(base.as_str(), |(server, _)| server);
    let demo_url = format!("{server}/{database}");
    let process = Process::spawn(&["demo", "--listen", "127.0.0.1:0", "--mysql", &demo_url]);
    let addr = process.addr;
    let tables = admin(
        &pool,
        "SELECT COUNT(*) AS n FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'terminus_demo_messages'",
        &[json!(database)],
    );
    assert_eq!(
        tables[0]["n"], 1,
        "the demo table was not created: {tables}"
    );
    smol::block_on(async {
        let mut board = Client::ready(addr, TRANSPORT_WS).await;
        board
            .send(subscribe(
                "board",
                "subscription { messageBoard(limit: 5) { text } }",
            ))
            .await;
        let first = board.recv().await;
        assert_eq!(
            first["payload"]["data"]["messageBoard"],
            json!([]),
            "{first}"
        );

        let posted = run(
            addr,
            "mutation($t: String!) { postMessage(text: $t) { id text createdAt } }",
            json!({"t": "hello from the test"}),
        )
        .await;
        assert_eq!(
            posted["data"]["postMessage"]["text"], "hello from the test",
            "{posted}"
        );
        assert!(posted["data"]["postMessage"]["createdAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        // Message.author is a relation (one statement for all messages).
        let listed = run(
            addr,
            "{ messages(limit: 5) { text author { name } } }",
            json!({}),
        )
        .await;
        assert_eq!(
            listed["data"]["messages"],
            json!([{"text": "hello from the test", "author": {"name": "guest"}}]),
            "{listed}"
        );
        let changed = board.recv().await;
        assert_eq!(
            changed["payload"]["data"]["messageBoard"],
            json!([{"text": "hello from the test"}]),
            "{changed}"
        );
        // The gRPC half of the demo still answers.
        let hello = run(addr, "{ hello(name: \"db\") }", json!({})).await;
        assert!(hello.get("errors").is_none(), "{hello}");
        assert!(metric(addr, "terminus_mysql_queries_total{db=\"main\"}").await >= 3.0);
    });
    drop(process);
}

#[test]
fn demo_with_a_bad_mysql_url_says_so() {
    let _shared = shared();
    let output = std::process::Command::new(terminus_binary())
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--mysql",
            "postgres://u@h/db",
        ])
        .output()
        .expect("terminus runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--mysql") && stderr.contains("mysql://"),
        "{stderr}"
    );
}

#[test]
fn arguments_bound_to_limit_and_offset_are_row_counts() {
    let _shared = shared();
    let pool = admin_pool();
    let (table, _cleanup) = table(
        &pool,
        "gw_page",
        "id BIGINT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(200) NOT NULL, n INT NULL",
    );
    for i in 0..5 {
        admin(
            &pool,
            &format!("INSERT INTO {table} (body, n) VALUES (?, ?)"),
            &[json!(format!("row {i}")), json!(i)],
        );
    }
    let sdl = format!(
        r#"
type Query {{
  page(limit: Int!, offset: Int = 0): [Note!]!
    @sql(db: "db", query: "SELECT id, body, n FROM {table} ORDER BY id LIMIT :limit OFFSET :offset")
  legacyPage(skip: Int!, count: Int!): [Note!]!
    @sql(db: "db", query: "SELECT id, body, n FROM {table} ORDER BY id LIMIT :skip, :count")
}}
type Note {{ id: ID! body: String! n: Int }}
"#
    );
    smol::block_on(async {
        let running = gateway(&sdl, "db", url(), |_| {}).await;
        let addr = running.local_addr();
        for (query, variables) in [
            ("{ page(limit: -1) { n } }", json!({})),
            ("{ page(limit: 2, offset: -1) { n } }", json!({})),
            (
                "query($l: Int!) { page(limit: $l) { n } }",
                json!({"l": 10_001}),
            ),
            ("{ legacyPage(skip: -3, count: 2) { n } }", json!({})),
            ("{ legacyPage(skip: 0, count: -1) { n } }", json!({})),
        ] {
            let result = run(addr, query, variables).await;
            assert_eq!(first_code(&result), "BAD_USER_INPUT", "{query}: {result}");
        }
        let page = run(addr, "{ page(limit: 2, offset: 1) { n } }", json!({})).await;
        assert_eq!(page["data"]["page"], json!([{"n": 1}, {"n": 2}]), "{page}");
        let legacy = run(addr, "{ legacyPage(skip: 3, count: 5) { n } }", json!({})).await;
        assert_eq!(
            legacy["data"]["legacyPage"],
            json!([{"n": 3}, {"n": 4}]),
            "{legacy}"
        );
        running.shutdown().await;
    });
}
