//! Many calls dropped at once (clients gone) leave nothing behind: no
//! statement on the server, no busy connection, no extra socket, no task.
//! Its own test binary, because it counts the process's file descriptors.

use serde_json::json;
use std::time::{Duration, Instant};
use terminus::mysql::{MysqlDbConfig, MysqlPool};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count())
        .unwrap_or(0)
}

async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        smol::Timer::after(Duration::from_millis(20)).await;
    }
}

#[test]
fn mysql_mass_cancellation_returns_to_baseline() {
    let url = std::env::var("TERMINUS_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned());
    let mut config = MysqlDbConfig::new(url.clone());
    config.max_connections = 5;
    config.acquire_timeout = Duration::from_secs(30);
    let pool = MysqlPool::new("mass", &config).unwrap();
    let admin = MysqlPool::new("admin", &MysqlDbConfig::new(url)).unwrap();
    let marker = format!("mass_marker_{}", std::process::id());
    smol::block_on(async {
        // Warm up: all five connections open and idle, plus the admin's one.
        let warm: Vec<_> = (0..5)
            .map(|_| {
                let pool = pool.clone();
                terminus::tasks::spawn(
                    async move { pool.query("SELECT SLEEP(0.2) AS s", &[]).await },
                )
            })
            .collect();
        for task in warm {
            task.await.unwrap();
        }
        let running = || async {
            admin
                .query(
                    "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST \
                     WHERE INFO LIKE ? AND ID <> CONNECTION_ID()",
                    &[json!(format!("%{marker}%"))],
                )
                .await
                .unwrap()[0]["n"]
                .as_u64()
                .unwrap()
        };
        assert_eq!(running().await, 0);
        assert_eq!(pool.stats().idle, 5);
        let baseline_fds = open_fds();
        let baseline_tasks = terminus::tasks::live_tasks();

        // 100 calls: five run, ninety-five wait for a connection. The five
        // are spawned first and seen running before the waiters come, so
        // which calls hold the connections is known.
        let statement = format!("SELECT SLEEP(30) AS s, ? AS i, '{marker}' AS m");
        let call = |i: i32| {
            let pool = pool.clone();
            let statement = statement.clone();
            terminus::tasks::spawn(async move { pool.query(&statement, &[json!(i)]).await })
        };
        let running_calls: Vec<_> = (0..5).map(call).collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        while running().await < 5 {
            assert!(Instant::now() < deadline, "the statements never started");
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        assert_eq!(pool.stats().busy, 5);
        let waiting_calls: Vec<_> = (5..100).map(call).collect();
        // The waiters are tasks on the executor: wait until all are queued.
        eventually("95 callers waiting", Duration::from_secs(5), || {
            pool.stats().acquire_waits_total >= 95
        })
        .await;

        // Every client goes away at once: the waiters' handles first, so
        // that no connection a kill recovers can go to a caller that is
        // still there (dropping a handle marks its task cancelled at once;
        // the task is never polled again). The other order let a kill that
        // finished while the drops were still going hand its connection to
        // a waiter, which started its statement and was killed in turn:
        // six kills where five statements were cancelled.
        drop(waiting_calls);
        drop(running_calls);
        let dropped = Instant::now();
        let deadline = dropped + Duration::from_secs(3);
        while running().await != 0 {
            assert!(
                Instant::now() < deadline,
                "killed statements still run after 3 s"
            );
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        eventually("all connections idle again", Duration::from_secs(5), || {
            let stats = pool.stats();
            stats.busy == 0 && stats.idle <= 5
        })
        .await;
        // Plus one: the pool's kill connection, opened by the first kill and
        // kept for the next ones.
        eventually("fds back to baseline", Duration::from_secs(5), || {
            open_fds() <= baseline_fds + 1
        })
        .await;
        eventually("tasks back to baseline", Duration::from_secs(5), || {
            terminus::tasks::live_tasks() <= baseline_tasks
        })
        .await;
        let stats = pool.stats();
        assert_eq!(stats.kills_total, 5);
        assert_eq!(
            stats.connections_opened_total, 5,
            "recovered connections were reused"
        );
        eprintln!(
            "back to baseline {:?} after the drop: {stats:?}",
            dropped.elapsed()
        );
        assert_eq!(
            pool.query("SELECT 1 AS x", &[]).await.unwrap(),
            json!([{"x": 1}])
        );
    });
}
