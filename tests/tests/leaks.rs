//! Mass abrupt disconnect against the real binary: 500 clients, each with a
//! live `ticks` subscription, drop their sockets with no close frame. The
//! gateway must return to its baseline (operations, upstream streams, tasks,
//! open fds) within 2 s, over one upstream connection throughout.

use std::time::{Duration, Instant};
use terminus_tests::*;

const CLIENTS: usize = 500;
const BACK_TO_BASELINE: Duration = Duration::from_secs(2);

#[test]
fn five_hundred_abrupt_disconnects_leave_nothing_behind() {
    let process = Process::spawn(&["demo", "--listen", "127.0.0.1:0"]);
    let addr = process.addr;
    smol::block_on(async {
        // Warm up: the first call opens the one upstream connection.
        let (status, body) = http(
            addr,
            "POST",
            "/graphql",
            &[("Content-Type", "application/json")],
            r#"{"query":"{ hello(name: \"warm\") }"}"#,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(metric(addr, "terminus_upstream_connections").await, 1.0);
        let baseline_tasks = metric(addr, "terminus_tasks").await;
        let baseline_fds = metric(addr, "process_open_fds").await;
        assert_eq!(metric(addr, "terminus_operations").await, 0.0);
        assert_eq!(metric(addr, "terminus_upstream_streams").await, 0.0);

        // 500 clients, connected concurrently, each with a live subscription
        // that has delivered at least one tick.
        let mut pending = Vec::with_capacity(CLIENTS);
        for i in 0..CLIENTS {
            let protocol = if i % 2 == 0 { TRANSPORT_WS } else { LEGACY_WS };
            pending.push(smol::spawn(async move {
                let mut client = Client::ready(addr, protocol).await;
                let query = "subscription { ticks(everyMs: 100) { seq } }";
                let message = if protocol == TRANSPORT_WS {
                    subscribe("live", query)
                } else {
                    start("live", query)
                };
                client.send(message).await;
                let first = client.recv().await;
                assert_eq!(first["payload"]["data"]["ticks"]["seq"], 1, "{first}");
                client
            }));
        }
        let mut clients = Vec::with_capacity(CLIENTS);
        for task in pending {
            clients.push(within(WAIT * 3, "500 subscriptions", task).await);
        }
        assert_eq!(metric(addr, "terminus_connections").await, CLIENTS as f64);
        assert_eq!(metric(addr, "terminus_operations").await, CLIENTS as f64);
        assert_eq!(
            metric(addr, "terminus_upstream_streams").await,
            CLIENTS as f64
        );
        assert_eq!(metric(addr, "terminus_upstream_connections").await, 1.0);
        assert!(metric(addr, "process_open_fds").await >= baseline_fds + CLIENTS as f64);

        // Everyone vanishes at once, without a close frame.
        for client in clients {
            client.drop_abruptly();
        }
        let dropped = Instant::now();
        loop {
            let upstream_connections = metric(addr, "terminus_upstream_connections").await;
            assert_eq!(
                upstream_connections, 1.0,
                "the upstream connection must stay the only one"
            );
            let last = vec![
                (
                    "terminus_operations",
                    metric(addr, "terminus_operations").await,
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
                eprintln!("back to baseline after {:?}: {last:?}", dropped.elapsed());
                break;
            }
            assert!(
                dropped.elapsed() < BACK_TO_BASELINE,
                "not back to baseline within {BACK_TO_BASELINE:?}: {last:?}"
            );
            smol::Timer::after(Duration::from_millis(50)).await;
        }
        assert!(
            metric(addr, "terminus_operations_cancelled_total").await >= CLIENTS as f64,
            "every subscription was cancelled by the gateway"
        );
    });
}
