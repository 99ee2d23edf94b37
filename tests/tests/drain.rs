//! Graceful drain: SIGTERM to the real binary with live subscriptions on
//! both subprotocols; every client sees 1001 and the process exits 0. And
//! in-process: while a drain is under way, readiness is false and new
//! WebSocket connections are refused.

use std::time::Duration;
use terminus_tests::*;

#[test]
fn sigterm_closes_every_connection_with_1001_and_exits_0() {
    let mut process = Process::spawn(&["demo", "--listen", "127.0.0.1:0"]);
    let addr = process.addr;
    let mut clients = smol::block_on(async {
        let mut clients = Vec::new();
        for (i, protocol) in [TRANSPORT_WS, LEGACY_WS, TRANSPORT_WS, LEGACY_WS]
            .into_iter()
            .enumerate()
        {
            let mut client = Client::ready(addr, protocol).await;
            let query = "subscription { ticks(everyMs: 20) { seq } }";
            let id = format!("s{i}");
            let message = if protocol == TRANSPORT_WS {
                subscribe(&id, query)
            } else {
                start(&id, query)
            };
            client.send(message).await;
            assert_eq!(client.recv().await["id"], id);
            clients.push(client);
        }
        assert_eq!(http(addr, "GET", "/readyz", &[], "").await.0, 200);
        assert_eq!(metric(addr, "terminus_operations").await, 4.0);
        clients
    });
    process.terminate();
    smol::block_on(async {
        for client in &mut clients {
            let closed = client.closed().await;
            assert_eq!(closed.code, 1001, "{closed:?}");
        }
    });
    let status = process.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "terminus exited with {status}");
}

/// The names of the threads of process `pid` that run its executor.
fn executor_threads(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc/PID/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("terminus-exec-"))
        .collect();
    names.sort();
    names
}

#[test]
fn the_executor_runs_on_the_threads_asked_for_and_stops_with_the_drain() {
    let mut process = Process::spawn(&["demo", "--listen", "127.0.0.1:0", "--threads", "3"]);
    assert_eq!(
        executor_threads(process.child.id()),
        ["terminus-exec-1", "terminus-exec-2", "terminus-exec-3"]
    );
    let addr = process.addr;
    let mut clients = smol::block_on(async {
        let mut clients = Vec::new();
        for i in 0..6 {
            let mut client = Client::ready(addr, TRANSPORT_WS).await;
            let id = format!("s{i}");
            client
                .send(subscribe(&id, "subscription { ticks(everyMs: 5) { seq } }"))
                .await;
            for _ in 0..3 {
                assert_eq!(client.recv().await["id"], id);
            }
            clients.push(client);
        }
        assert_eq!(metric(addr, "terminus_operations").await, 6.0);
        clients
    });
    process.terminate();
    smol::block_on(async {
        for client in &mut clients {
            assert_eq!(client.closed().await.code, 1001);
        }
    });
    let status = process.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "terminus exited with {status}");

    let mut upstream = std::process::Command::new(terminus_binary())
        .args(["demo-upstream", "--listen", "127.0.0.1:0", "--threads", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("terminus demo-upstream starts");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(upstream.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("it prints its address");
    assert!(line.contains("terminus.demo.v1.Demo"), "{line}");
    let names = executor_threads(upstream.id());
    let _ = upstream.kill();
    let _ = upstream.wait();
    assert_eq!(names, ["terminus-exec-1", "terminus-exec-2"]);

    let output = std::process::Command::new(terminus_binary())
        .args(["demo", "--listen", "127.0.0.1:0", "--threads", "0"])
        .output()
        .expect("terminus runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("runtime.threads (--threads) must be 1 to 256"),
        "{stderr}"
    );
}

#[test]
fn readiness_is_false_and_upgrades_are_refused_while_draining() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| {
            // The client below never answers our close frame, which keeps the
            // drain open for this long.
            config.timeouts.close_linger = Duration::from_secs(2);
        })
        .await;
        let addr = gateway.addr();
        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client
            .send(subscribe(
                "s",
                "subscription { ticks(everyMs: 20) { seq } }",
            ))
            .await;
        assert_eq!(client.recv().await["id"], "s");

        let DemoGateway { running, upstream } = gateway;
        let drain = smol::spawn(running.shutdown());
        let closed = client.closed().await;
        assert_eq!(closed.code, 1001);
        let (status, body) = http(addr, "GET", "/readyz", &[], "").await;
        assert_eq!(status, 503, "{body}");
        let refused = Client::connect(addr, &[TRANSPORT_WS])
            .await
            .err()
            .expect("refused while draining");
        assert!(refused.contains("503"), "{refused}");

        let report = within(WAIT, "the drain", drain).await;
        assert_eq!(report.leaked_operations, 0, "{report:?}");
        assert_eq!(report.forced_connections, 0, "{report:?}");
        drop(upstream);
    });
}

#[test]
fn the_drain_is_bounded_by_its_timeout() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| {
            // A client that never answers our close frame would hold the
            // drain open for close_linger; the drain timeout is shorter.
            config.timeouts.close_linger = Duration::from_secs(30);
            config.timeouts.drain = Duration::from_millis(300);
        })
        .await;
        let addr = gateway.addr();
        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client
            .send(subscribe(
                "s",
                "subscription { ticks(everyMs: 20) { seq } }",
            ))
            .await;
        assert_eq!(client.recv().await["id"], "s");
        let DemoGateway { running, upstream } = gateway;
        let started = std::time::Instant::now();
        let report = within(WAIT, "the drain", running.shutdown()).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{report:?}");
        assert_eq!(report.forced_connections, 1, "{report:?}");
        // The connection's operations were cancelled before it was dropped.
        assert_eq!(report.leaked_operations, 0, "{report:?}");
        assert_eq!(client.closed().await.code, 1001);
        drop(upstream);
    });
}
