//! The MySQL upstream against the real MariaDB (or MySQL) at
//! `TERMINUS_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`).
//! Every test creates its own uniquely named tables (and users) and drops them.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use terminus::mysql::{MysqlDbConfig, MysqlPool};
use terminus_core::FailureKind;

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

fn pool_with(name: &str, change: impl FnOnce(&mut MysqlDbConfig)) -> Arc<MysqlPool> {
    let mut config = MysqlDbConfig::new(url());
    change(&mut config);
    MysqlPool::new(name, &config).expect("valid config")
}

fn default_pool() -> Arc<MysqlPool> {
    pool_with("test", |_| {})
}

/// Drops the table when the test ends, pass or fail.
struct Table {
    pool: Arc<MysqlPool>,
    name: String,
}

impl Table {
    fn create(pool: &Arc<MysqlPool>, prefix: &str, columns: &str) -> Table {
        let name = unique(prefix);
        smol::block_on(pool.execute(&format!("CREATE TABLE {name} ({columns})"), &[]))
            .expect("create table");
        Table {
            pool: pool.clone(),
            name,
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let _ = smol::block_on(
            self.pool
                .execute(&format!("DROP TABLE IF EXISTS {}", self.name), &[]),
        );
    }
}

/// How many statements containing `marker` run on the server, other than
/// the one asking.
async fn running_with_marker(admin: &MysqlPool, marker: &str) -> u64 {
    let rows = admin
        .query(
            "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST \
             WHERE INFO LIKE ? AND ID <> CONNECTION_ID()",
            &[json!(format!("%{marker}%"))],
        )
        .await
        .expect("processlist");
    rows[0]["n"].as_u64().expect("count")
}

async fn wait_until_gone(admin: &MysqlPool, marker: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if running_with_marker(admin, marker).await == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        smol::Timer::after(Duration::from_millis(50)).await;
    }
}

async fn wait_until_running(admin: &MysqlPool, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while running_with_marker(admin, marker).await == 0 {
        assert!(Instant::now() < deadline, "the statement never started");
        smol::Timer::after(Duration::from_millis(20)).await;
    }
}

#[test]
fn mysql_column_types_round_trip_in_text_and_binary_protocols() {
    let pool = default_pool();
    let table = Table::create(
        &pool,
        "t_types",
        "id INT PRIMARY KEY, i INT, big BIGINT UNSIGNED, neg BIGINT, dec_col DECIMAL(20,6), \
         f FLOAT, d DOUBLE, v VARCHAR(50), t TEXT, b BLOB, dt DATE, dtm DATETIME(3), \
         ts TIMESTAMP(6) NULL, tm TIME, n INT NULL, j JSON, y YEAR, bits BIT(12), e ENUM('a','b')",
    );
    smol::block_on(async {
        let inserted = pool
            .execute(
                &format!(
                    "INSERT INTO {} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, UNHEX(?), ?, ?, ?, ?, ?, ?, ?, b'101000000001', ?)",
                    table.name
                ),
                &[
                    json!(1),
                    json!(-42),
                    json!(u64::MAX),
                    json!(i64::MIN),
                    json!("12345678901234.123456"),
                    json!(0.1),
                    json!(2.5e-300),
                    json!("héllo ✓"),
                    json!("long text"),
                    json!("00FF10"),
                    json!("2024-02-29"),
                    json!("2024-02-29 13:05:09.120"),
                    json!("2001-02-03 04:05:06.000007"),
                    json!("-26:03:04"),
                    Value::Null,
                    json!({"a": [1, 2]}),
                    json!(2024),
                    json!("b"),
                ],
            )
            .await
            .expect("insert");
        assert_eq!(inserted, json!({"affectedRows": 1, "lastInsertId": 0}));

        let expected = json!({
            "id": 1, "i": -42, "big": u64::MAX, "neg": i64::MIN,
            "dec_col": "12345678901234.123456", "f": 0.1, "d": 2.5e-300,
            "v": "héllo ✓", "t": "long text", "b": "AP8Q",
            "dt": "2024-02-29", "dtm": "2024-02-29 13:05:09.120",
            "ts": "2001-02-03 04:05:06.000007", "tm": "-26:03:04", "n": null,
            "j": "{\"a\":[1,2]}", "y": 2024, "bits": 0b1010_0000_0001, "e": "b"
        });
        // No parameters: COM_QUERY and the text protocol.
        let text = pool
            .query(&format!("SELECT * FROM {}", table.name), &[])
            .await
            .expect("text select");
        // A parameter: a prepared statement and the binary protocol.
        let binary = pool
            .query(
                &format!("SELECT * FROM {} WHERE id = ?", table.name),
                &[json!(1)],
            )
            .await
            .expect("binary select");
        assert_eq!(text, json!([expected.clone()]));
        assert_eq!(binary, json!([expected]));

        // Expressions without a table, and an empty result.
        let exprs = pool
            .query(
                "SELECT 1 AS one, NULL AS nothing, 'x' AS s, 1.50 AS exact",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            exprs,
            json!([{"one": 1, "nothing": null, "s": "x", "exact": "1.50"}])
        );
        let none = pool
            .query(
                &format!("SELECT id FROM {} WHERE id = ?", table.name),
                &[json!(99)],
            )
            .await
            .unwrap();
        assert_eq!(none, json!([]));
    });
}

#[test]
fn mysql_parameters_stay_values_even_when_they_look_like_sql() {
    let pool = default_pool();
    let table = Table::create(
        &pool,
        "t_inject",
        "id INT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(200)",
    );
    smol::block_on(async {
        let attacks = [
            format!("'; DROP TABLE {}; --", table.name),
            "\\' OR 1=1 -- ".to_owned(),
            "\" OR \"\"=\"".to_owned(),
            "x'); DELETE FROM mysql.user; --".to_owned(),
        ];
        let mut last_id = 0;
        for attack in &attacks {
            let result = pool
                .execute(
                    &format!("INSERT INTO {} (body) VALUES (?)", table.name),
                    &[json!(attack)],
                )
                .await
                .expect("insert");
            assert_eq!(result["affectedRows"], json!(1));
            let id = result["lastInsertId"].as_u64().unwrap();
            assert!(id > last_id, "lastInsertId grows: {result}");
            last_id = id;
        }
        let rows = pool
            .query(
                &format!("SELECT body FROM {} WHERE body = ? ORDER BY id", table.name),
                &[json!(attacks[1])],
            )
            .await
            .unwrap();
        assert_eq!(
            rows,
            json!([{"body": attacks[1]}]),
            "matched as a value only"
        );
        let all = pool
            .query(&format!("SELECT body FROM {} ORDER BY id", table.name), &[])
            .await
            .expect("the table still exists");
        let bodies: Vec<Value> = attacks.iter().map(|a| json!({"body": a})).collect();
        assert_eq!(all, Value::Array(bodies));

        let wrong_count = pool
            .query(
                &format!("SELECT body FROM {} WHERE id = ?", table.name),
                &[json!(1), json!(2)],
            )
            .await
            .unwrap_err();
        assert_eq!(wrong_count.kind, FailureKind::BadInput, "{wrong_count}");
    });
}

#[test]
fn mysql_server_errors_and_unreachable_servers_map_to_failures() {
    let pool = default_pool();
    smol::block_on(async {
        let missing = unique("t_missing");
        let error = pool
            .query(&format!("SELECT * FROM {missing}"), &[])
            .await
            .unwrap_err();
        assert_eq!(error.kind, FailureKind::Failed);
        assert!(error.message.contains("1146"), "{error}");
        assert!(error.message.contains(&missing), "{error}");
        let syntax = pool.query("SELEC 1", &[]).await.unwrap_err();
        assert!(syntax.message.contains("1064"), "{syntax}");
        // The connection survived the errors.
        assert_eq!(
            pool.query("SELECT 2 AS two", &[]).await.unwrap(),
            json!([{"two": 2}])
        );

        let nowhere = MysqlPool::new(
            "nowhere",
            &MysqlDbConfig::new("mysql://root@127.0.0.1:1/test"),
        )
        .unwrap();
        let error = nowhere.query("SELECT 1", &[]).await.unwrap_err();
        assert_eq!(error.kind, FailureKind::Unavailable, "{error}");
    });
    assert!(MysqlPool::new("bad", &MysqlDbConfig::new("http://x")).is_err());
}

#[test]
fn mysql_pool_exhaustion_answers_busy_within_the_acquire_timeout() {
    let pool = pool_with("tiny", |c| {
        c.max_connections = 1;
        c.acquire_timeout = Duration::from_millis(200);
    });
    smol::block_on(async {
        let holder = {
            let pool = pool.clone();
            terminus::tasks::spawn(async move { pool.query("SELECT SLEEP(1) AS s", &[]).await })
        };
        // Let the holder take the only connection.
        let deadline = Instant::now() + Duration::from_secs(3);
        while pool.stats().busy == 0 {
            assert!(Instant::now() < deadline);
            smol::Timer::after(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        let error = pool.query("SELECT 1", &[]).await.unwrap_err();
        let waited = started.elapsed();
        assert_eq!(error.kind, FailureKind::Busy, "{error}");
        assert!(error.message.contains("pool tiny exhausted"), "{error}");
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
        assert!(waited < Duration::from_millis(900), "{waited:?}");
        assert_eq!(holder.await.unwrap(), json!([{"s": 0}]));
        let stats = pool.stats();
        assert_eq!(stats.acquire_timeouts_total, 1);
        assert!(stats.acquire_waits_total >= 1);
        // The connection came back and serves the next call.
        assert_eq!(
            pool.query("SELECT 1 AS x", &[]).await.unwrap(),
            json!([{"x": 1}])
        );
        assert_eq!(pool.stats().connections_opened_total, 1);
    });
}

#[test]
fn mysql_statement_timeout_kills_the_statement() {
    let pool = pool_with("slow", |c| {
        c.max_connections = 1;
        c.statement_timeout = Duration::from_millis(300);
    });
    let admin = default_pool();
    smol::block_on(async {
        let marker = unique("timeout_marker");
        let started = Instant::now();
        let error = pool
            .query(&format!("SELECT SLEEP(5) AS s, '{marker}' AS m"), &[])
            .await
            .unwrap_err();
        assert_eq!(error.kind, FailureKind::Timeout, "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            running_with_marker(&admin, &marker).await,
            0,
            "killed, not left running"
        );
        assert_eq!(pool.stats().kills_total, 1);
        // The killed statement's connection was drained and is reused.
        assert_eq!(
            pool.query("SELECT 3 AS x", &[]).await.unwrap(),
            json!([{"x": 3}])
        );
        assert_eq!(pool.stats().connections_opened_total, 1);
        let stats = pool.stats();
        assert_eq!(stats.query_failures_total, 1);
        assert_eq!(stats.query_durations.count, 2);
    });
}

#[test]
fn mysql_dropping_a_query_kills_it_on_the_server() {
    let pool = pool_with("cancel", |c| c.max_connections = 1);
    let admin = default_pool();
    smol::block_on(async {
        let marker = unique("cancel_marker");
        let statement = format!("SELECT SLEEP(30) AS s, ? AS m, '{marker}' AS m2");
        {
            let params = [json!(1)];
            let query = pool.query(&statement, &params);
            let watcher = async {
                wait_until_running(&admin, &marker).await;
                None
            };
            // Drive the query until it runs on the server, then drop it.
            let result = smol::future::or(async { Some(query.await) }, watcher).await;
            assert!(result.is_none(), "the query should still be running");
        }
        let dropped_at = Instant::now();
        assert!(
            wait_until_gone(&admin, &marker, Duration::from_secs(1)).await,
            "the dropped query still runs after 1 s"
        );
        eprintln!("killed within {:?}", dropped_at.elapsed());
        // The connection is drained and returned, not leaked.
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.stats().busy != 0 {
            assert!(Instant::now() < deadline, "connection never came back");
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        assert_eq!(pool.stats().idle, 1);
        assert_eq!(pool.stats().kills_total, 1);
        assert_eq!(
            pool.query("SELECT 4 AS x", &[json!(1)])
                .await
                .unwrap_err()
                .kind,
            FailureKind::BadInput
        );
        assert_eq!(
            pool.query("SELECT 4 AS x", &[]).await.unwrap(),
            json!([{"x": 4}])
        );
        assert_eq!(pool.stats().connections_opened_total, 1);
    });
}

#[test]
fn mysql_pool_recovers_after_its_connections_are_killed() {
    let pool = pool_with("recover", |c| c.max_connections = 2);
    let admin = default_pool();
    smol::block_on(async {
        // Open both connections and learn their server-side ids.
        let both = smol::future::zip(
            pool.query("SELECT CONNECTION_ID() AS id, SLEEP(0.2) AS s", &[]),
            pool.query("SELECT CONNECTION_ID() AS id, SLEEP(0.2) AS s", &[]),
        )
        .await;
        let ids = [
            both.0.unwrap()[0]["id"].clone(),
            both.1.unwrap()[0]["id"].clone(),
        ];
        assert_ne!(ids[0], ids[1]);
        assert_eq!(pool.stats().idle, 2);
        // A stand-in for a server restart: the server drops both sessions.
        for id in &ids {
            admin
                .execute(&format!("KILL CONNECTION {}", id.as_u64().unwrap()), &[])
                .await
                .expect("kill connection");
        }
        smol::Timer::after(Duration::from_millis(100)).await;
        // The next calls succeed without a single error, on new sessions.
        for _ in 0..4 {
            let rows = pool
                .query("SELECT CONNECTION_ID() AS id", &[])
                .await
                .expect("the pool recovers by itself");
            assert!(!ids.contains(&rows[0]["id"]), "a dead session was reused");
        }
        assert_eq!(pool.stats().connections_opened_total, 3);
    });
}

#[test]
fn mysql_native_password_login_with_a_created_user() {
    let admin = default_pool();
    let user = unique("tu");
    // Interpolated into CREATE USER below (which cannot take parameters), so
    // it holds no quote; the url percent-encodes it.
    let password = "pw with spaces & symbols!";
    smol::block_on(async {
        admin
            .execute(
                &format!("CREATE USER '{user}'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{password}')"),
                &[],
            )
            .await
            .expect("create user");
        let outcome = async {
            let base = url();
            let rest = base
                .split_once('@')
                .map(|(_, r)| r)
                .unwrap_or("127.0.0.1:3306/test");
            // The user has no grants: log in without a default database.
            let host = rest.split('/').next().unwrap_or(rest);
            let encoded: String = password
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect();
            let good = MysqlPool::new(
                "user",
                &MysqlDbConfig::new(format!("mysql://{user}:{encoded}@{host}")),
            )
            .unwrap();
            let rows = good.query("SELECT CURRENT_USER() AS u", &[]).await;
            let bad = MysqlPool::new(
                "user",
                &MysqlDbConfig::new(format!("mysql://{user}:wrong@{host}")),
            )
            .unwrap();
            let denied = bad.query("SELECT 1", &[]).await;
            (rows, denied)
        }
        .await;
        admin
            .execute(&format!("DROP USER '{user}'@'%'"), &[])
            .await
            .expect("drop user");
        let (rows, denied) = outcome;
        assert_eq!(rows.expect("login"), json!([{"u": format!("{user}@%")}]));
        let denied = denied.unwrap_err();
        assert_eq!(denied.kind, FailureKind::Unavailable);
        assert!(denied.message.contains("Access denied"), "{denied}");
    });
}

#[test]
fn mysql_a_connection_left_inside_a_transaction_is_not_reused() {
    let pool = pool_with("tx", |c| c.max_connections = 1);
    let table = Table::create(&pool, "t_tx", "id INT PRIMARY KEY");
    smol::block_on(async {
        pool.execute("BEGIN", &[]).await.expect("begin");
        pool.execute(
            &format!("INSERT INTO {} VALUES (?)", table.name),
            &[json!(1)],
        )
        .await
        .expect("insert on a new connection, outside the open transaction");
        pool.execute("START TRANSACTION", &[]).await.unwrap();
        let rows = pool
            .query(&format!("SELECT id FROM {}", table.name), &[])
            .await
            .unwrap();
        assert_eq!(
            rows,
            json!([{"id": 1}]),
            "autocommitted, not stuck in a transaction"
        );
        assert_eq!(pool.stats().connections_opened_total, 3);
    });
    // The table's Drop needs the pool's only connection: it is free again.
}

#[test]
fn mysql_identical_live_queries_share_one_poll_that_ends_with_its_subscribers() {
    let pool = pool_with("live", |c| c.max_connections = 3);
    let table = Table::create(&pool, "t_live", "id INT PRIMARY KEY, body VARCHAR(20)");
    let admin = default_pool();
    smol::block_on(async {
        pool.execute(&format!("INSERT INTO {} VALUES (1, 'a')", table.name), &[])
            .await
            .unwrap();
        let statement = format!(
            "SELECT id, body FROM {} WHERE id >= ? ORDER BY id",
            table.name
        );
        let every = Duration::from_millis(100);
        let mut first = pool.live(&statement, &[json!(0)], every);
        let mut second = pool.live(&statement, &[json!(0)], every);
        assert_eq!(
            pool.stats().live_polls,
            1,
            "identical subscriptions share a poll"
        );
        let expected = json!([{"id": 1, "body": "a"}]);
        assert_eq!(first.next().await.unwrap(), expected);
        assert_eq!(second.next().await.unwrap(), expected);

        // One poll every 100 ms for both subscribers, not one each.
        let before = pool.stats().queries_total;
        smol::Timer::after(Duration::from_millis(550)).await;
        let polls = pool.stats().queries_total - before;
        assert!((3..=7).contains(&polls), "{polls} polls in 550 ms");

        // A change reaches both subscribers.
        pool.execute(&format!("INSERT INTO {} VALUES (2, 'b')", table.name), &[])
            .await
            .unwrap();
        let changed = json!([{"id": 1, "body": "a"}, {"id": 2, "body": "b"}]);
        for subscriber in [&mut first, &mut second] {
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                if subscriber.next().await.unwrap() == changed {
                    break;
                }
                assert!(Instant::now() < deadline, "the change never arrived");
            }
        }

        // Other parameters: a poll of its own.
        let mut other = pool.live(&statement, &[json!(2)], every);
        assert_eq!(pool.stats().live_polls, 2);
        assert_eq!(other.next().await.unwrap(), json!([{"id": 2, "body": "b"}]));
        drop(other);
        drop(first);
        assert_eq!(
            pool.stats().live_polls,
            1,
            "the poll lives while a subscriber does"
        );
        drop(second);
        assert_eq!(pool.stats().live_polls, 0);
        smol::Timer::after(Duration::from_millis(150)).await;
        let stopped = pool.stats().queries_total;
        smol::Timer::after(Duration::from_millis(350)).await;
        assert_eq!(pool.stats().queries_total, stopped, "polling stopped");

        // A poll running when its last subscriber leaves is killed.
        let marker = unique("live_marker");
        let slow = pool.live(
            &format!("SELECT SLEEP(30) AS s, ? AS m, '{marker}' AS m2"),
            &[json!(1)],
            every,
        );
        wait_until_running(&admin, &marker).await;
        drop(slow);
        assert!(
            wait_until_gone(&admin, &marker, Duration::from_secs(1)).await,
            "the abandoned poll still runs"
        );
    });
}

#[test]
fn mysql_large_values_round_trip() {
    let pool = default_pool();
    let table = Table::create(&pool, "t_large", "id INT PRIMARY KEY, body LONGTEXT");
    smol::block_on(async {
        // 3 MiB: many socket reads for one packet, both directions.
        let body: String = (0..3 * 1024 * 1024)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        pool.execute(
            &format!("INSERT INTO {} VALUES (?, ?)", table.name),
            &[json!(1), json!(body)],
        )
        .await
        .expect("insert 3 MiB");
        for params in [vec![], vec![json!(1)]] {
            let filter = if params.is_empty() {
                ""
            } else {
                " WHERE id = ?"
            };
            let rows = pool
                .query(&format!("SELECT body FROM {}{filter}", table.name), &params)
                .await
                .expect("select 3 MiB");
            assert_eq!(rows[0]["body"].as_str().map(str::len), Some(body.len()));
            assert!(rows[0]["body"] == json!(body));
        }
    });
}
