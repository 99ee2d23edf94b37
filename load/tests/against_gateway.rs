//! The load generator against the real gateway: `terminus demo`'s parts
//! (the demo gRPC upstream on loopback and the server in front of it),
//! started in this process on free ports, driven over real TCP.
//!
//! One test function on purpose: the reclaim check counts this process's
//! open fds, which other tests running in parallel threads would disturb.

use clap::Parser;
use std::net::SocketAddr;
use std::sync::mpsc;
use terminus::demo_upstream::DemoUpstream;
use terminus::server::Server;
use terminus_load::Args;

/// The gateway on its own thread; dropping it drains and stops it.
struct Gateway {
    addr: SocketAddr,
    stop: Option<smol::channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<i64>>,
}

impl Gateway {
    fn start() -> Gateway {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
        let thread = std::thread::spawn(move || {
            smol::block_on(async move {
                let upstream = DemoUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0)))
                    .await
                    .expect("the demo upstream starts");
                let (config, schema, upstreams) = terminus::run::demo_parts(
                    SocketAddr::from(([127, 0, 0, 1], 0)),
                    upstream.endpoint(),
                    None,
                )
                .await
                .expect("the demo config is valid");
                let running = Server::start_with(config, schema, upstreams)
                    .await
                    .expect("the gateway starts");
                addr_tx.send(running.local_addr()).expect("the test waits");
                let _ = stop_rx.recv().await;
                let report = running.shutdown().await;
                upstream.stop().await;
                report.leaked_operations
            })
        });
        let addr = addr_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the gateway listens within 30 s");
        Gateway {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Drains the gateway; returns its leaked operations.
    fn stop(mut self) -> i64 {
        drop(self.stop.take());
        self.thread
            .take()
            .expect("stopped once")
            .join()
            .expect("the gateway thread does not panic")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn args(gateway: &Gateway, extra: &[&str]) -> Args {
    let url = format!("ws://{}/graphql", gateway.addr);
    let mut argv = vec![
        "terminus-load",
        "--url",
        &url,
        "--settle",
        "200ms",
        "--sample-interval",
        "100ms",
        "--reclaim-timeout",
        "10s",
        "--expect",
        "terminus_upstream_connections=1",
    ];
    argv.extend_from_slice(extra);
    Args::try_parse_from(argv).expect("valid arguments")
}

#[test]
fn load_runs_measure_and_see_the_gateway_reclaim_everything() {
    let gateway = Gateway::start();

    // Hold: both subprotocols, two subscriptions each, dropped abruptly.
    let hold = terminus_load::run(&args(
        &gateway,
        &[
            "-c",
            "40",
            "-s",
            "2",
            "--protocol",
            "mixed",
            "--every-ms",
            "50",
            "--hold",
            "1s",
            "--end",
            "abrupt",
        ],
    ))
    .expect("the hold run completes");
    assert!(hold.passed, "{}", hold.table());
    assert_eq!(hold.connect.acked, 40);
    // 80 subscriptions x 20 ticks/s for about a second.
    assert!(hold.delivery.frames > 500, "{}", hold.table());
    assert!(hold.delivery.lateness.count > 0);
    let peak = |name: &str| {
        hold.reclaim
            .series
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.loaded)
            .unwrap_or_default()
    };
    assert!(peak("terminus_operations") >= 80.0, "{}", hold.table());
    assert!(
        peak("terminus_upstream_streams") >= 80.0,
        "{}",
        hold.table()
    );
    assert!(hold.reclaim.reclaimed);
    assert!(hold.samples.iter().any(|s| s.phase == "hold"));
    assert!(hold.svg("terminus_operations").contains("<polyline"));
    let json = serde_json::to_value(&hold).expect("the report serialises");
    assert_eq!(json["connections"], 40);

    // Churn: subscribe, first tick, complete, again; then a clean close.
    let churn = terminus_load::run(&args(
        &gateway,
        &[
            "--mode",
            "churn",
            "-c",
            "5",
            "-s",
            "2",
            "--every-ms",
            "5",
            "--hold",
            "1s",
            "--end",
            "clean",
        ],
    ))
    .expect("the churn run completes");
    assert!(churn.passed, "{}", churn.table());
    assert!(churn.delivery.cycles > 20, "{}", churn.table());

    // Reconnect: connect, subscribe, first tick, drop, repeat.
    let reconnect = terminus_load::run(&args(
        &gateway,
        &[
            "--mode",
            "reconnect",
            "-c",
            "5",
            "-s",
            "1",
            "--every-ms",
            "5",
            "--hold",
            "1s",
        ],
    ))
    .expect("the reconnect run completes");
    assert!(reconnect.passed, "{}", reconnect.table());
    assert!(reconnect.delivery.cycles > 5, "{}", reconnect.table());

    assert_eq!(gateway.stop(), 0, "the gateway leaked operations at drain");
}

#[test]
fn a_server_that_is_not_there_is_a_clear_error() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("ws://127.0.0.1:{port}/graphql");
    let args = Args::try_parse_from(["terminus-load", "--url", &url, "--metrics-timeout", "2s"])
        .expect("valid arguments");
    let error = terminus_load::run(&args).expect_err("nothing listens there");
    assert!(error.contains("cannot read"), "{error}");
}
