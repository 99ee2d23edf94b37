//! Task ownership of the gRPC client and the demo upstream. A test binary of
//! its own, with one test, because `live_tasks` counts the whole process.

use serde_json::json;
use std::time::{Duration, Instant};
use terminus::demo_upstream::{descriptor_pool, DemoUpstream};
use terminus::grpc::{GrpcUpstream, GrpcUpstreamConfig};
use terminus::tasks::live_tasks;

async fn eventually(bound: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < bound,
            "{what} did not happen within {bound:?}"
        );
        smol::Timer::after(Duration::from_millis(5)).await;
    }
}

#[test]
fn streams_and_owners_leave_no_tasks_behind() {
    smol::block_on(async {
        assert_eq!(live_tasks(), 0);
        let server = DemoUpstream::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let config = GrpcUpstreamConfig {
            endpoint: server.endpoint(),
            ..GrpcUpstreamConfig::default()
        };
        let upstream = GrpcUpstream::from_descriptors("demo", &config, descriptor_pool()).unwrap();
        upstream
            .unary("terminus.demo.v1.Demo/Hello", json!({}))
            .await
            .unwrap();
        // Let the finished call's tasks end, then take the idle baseline.
        smol::Timer::after(Duration::from_millis(50)).await;
        let baseline = live_tasks();
        let mut streams = Vec::new();
        for _ in 0..100 {
            let stream = upstream
                .server_streaming("terminus.demo.v1.Demo/Ticks", json!({"everyMs": 10_000}))
                .await
                .unwrap();
            streams.push(stream);
        }
        eventually(
            Duration::from_secs(5),
            "the server sees 100 streams",
            || server.live_streams() == 100,
        )
        .await;
        assert!(
            live_tasks() > baseline,
            "hyper runs each server stream as a task"
        );
        drop(streams);
        eventually(
            Duration::from_secs(2),
            "tasks return to the baseline",
            || live_tasks() == baseline,
        )
        .await;
        assert_eq!(server.live_streams(), 0);
        drop(upstream);
        drop(server);
        eventually(
            Duration::from_secs(2),
            "every task ends with its owner",
            || live_tasks() == 0,
        )
        .await;
    });
}
