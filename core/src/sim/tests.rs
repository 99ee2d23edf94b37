//! Simulation scenarios: each ends by asserting nothing is left alive.

use super::*;

fn run(config: SimConfig) -> Sim {
    let mut sim = Sim::new(config);
    sim.run();
    let findings = sim.findings();
    assert!(
        findings.is_empty(),
        "seed {}: {}",
        sim.config().seed,
        findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    sim
}

fn config(seed: u64, faults: Faults) -> SimConfig {
    SimConfig {
        seed,
        clients: 12,
        faults,
        ..SimConfig::default()
    }
}

#[test]
fn clean_runs_deliver_results_and_leave_nothing_alive() {
    for seed in 0..10 {
        let sim = run(config(seed, Faults::default()));
        let stats = sim.stats();
        assert!(stats.starts > 0);
        assert!(stats.client_nexts > 0);
        assert!(stats.client_completes > 0);
        // Every client closed normally at the end of the scenario.
        assert_eq!(stats.client_closed.get(&1000), Some(&12), "{stats:?}");
        // The only server closes answer legacy `connection_terminate`.
        assert!(
            stats
                .server_closes
                .keys()
                .all(|code| *code == close::NORMAL),
            "{stats:?}"
        );
    }
}

#[test]
fn late_upstream_events_happen_and_are_dropped() {
    let mut late = 0;
    for seed in 0..3 {
        let mut cfg = config(seed, Faults::default());
        cfg.latency_ms = 50;
        cfg.complete_early = 0.9;
        cfg.script.period_ms = (1, 30);
        cfg.script.nexts = (10, 30);
        late += run(cfg).stats().late_upstream_events;
    }
    assert!(late > 0);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let faults = Faults::all(0.3);
    let a = run(config(99, faults.clone()));
    let b = run(config(99, faults));
    assert_eq!(a.stats(), b.stats());
    assert_eq!(a.now(), b.now());
}

#[test]
fn abrupt_closes_end_every_operation() {
    for seed in 0..10 {
        let mut cfg = config(
            seed,
            Faults {
                abrupt_close: 1.0,
                ..Faults::default()
            },
        );
        cfg.ops_per_client = (10, 10);
        let sim = run(cfg);
        assert_eq!(sim.stats().client_closed.get(&1006), Some(&12));
    }
}

#[test]
fn lost_pongs_are_detected_by_keepalive() {
    let mut cfg = config(
        3,
        Faults {
            lost_pong: 1.0,
            ..Faults::default()
        },
    );
    // Idle long enough after the last operation for pings to time out.
    cfg.duration_ms = 120_000;
    cfg.ops_per_client = (1, 1);
    let sim = run(cfg);
    let keepalive_closes = sim.stats().server_closes.get(&close::GOING_AWAY);
    assert!(
        keepalive_closes.is_some_and(|n| *n > 0),
        "{:?}",
        sim.stats()
    );
}

#[test]
fn slow_readers_are_closed_and_their_operations_cancelled() {
    let mut cfg = config(
        5,
        Faults {
            slow_reader: 1.0,
            ..Faults::default()
        },
    );
    cfg.ops_per_client = (5, 10);
    cfg.script.nexts = (50, 100);
    cfg.script.period_ms = (1, 20);
    cfg.server.max_outbound_bytes = 2_000;
    let sim = run(cfg);
    let closes = &sim.stats().server_closes;
    assert!(
        closes.get(&close::TRY_AGAIN_LATER).is_some_and(|n| *n > 0),
        "{closes:?}"
    );
    assert!(sim.stats().cancels > 0);
}

#[test]
fn upstream_errors_reach_the_client_and_end_the_operation() {
    let mut cfg = config(8, Faults::default());
    cfg.script.error_probability = 0.5;
    let sim = run(cfg);
    assert!(sim.stats().client_errors > 0);
}

#[test]
fn duplicate_ids_and_malformed_frames_are_handled_per_protocol() {
    let mut saw_4409 = false;
    let mut saw_4400 = false;
    for seed in 0..10 {
        let mut cfg = config(
            seed,
            Faults {
                duplicate_id: 1.0,
                malformed_frame: 1.0,
                ..Faults::default()
            },
        );
        cfg.script.nexts = (30, 60);
        cfg.ops_per_client = (4, 6);
        let sim = run(cfg);
        let closes = &sim.stats().server_closes;
        saw_4409 |= closes.contains_key(&close::SUBSCRIBER_ALREADY_EXISTS);
        saw_4400 |= closes.contains_key(&close::BAD_REQUEST);
    }
    assert!(saw_4409 && saw_4400);
}

#[test]
fn rejected_inits_close_4403_and_run_nothing() {
    let sim = run(config(
        11,
        Faults {
            reject_auth: 1.0,
            ..Faults::default()
        },
    ));
    assert_eq!(sim.stats().server_closes.get(&close::FORBIDDEN), Some(&12));
    assert_eq!(sim.stats().starts, 0);
}

#[test]
fn every_fault_at_once_over_many_seeds() {
    for seed in 100..125 {
        let mut cfg = config(seed, Faults::all(0.25));
        cfg.script.error_probability = 0.2;
        cfg.latency_ms = seed % 7;
        run(cfg);
    }
}

#[test]
fn a_run_that_cannot_settle_is_reported() {
    let mut cfg = config(1, Faults::default());
    cfg.max_steps = 3;
    let mut sim = Sim::new(cfg);
    sim.run();
    let findings = sim.findings();
    assert!(findings.iter().any(|f| matches!(
        f.violation,
        Violation::Simulation(SimulationViolation::DidNotSettle { .. })
    )));
}

#[test]
fn the_traced_pair_shows_its_frames_and_no_other() {
    let mut sim = Sim::new(config(5, Faults::default()));
    sim.trace_pair(Some(3));
    sim.run();
    let trace = sim.take_trace();
    let protocol = sim.pairs()[3].protocol();
    assert!(trace[0].from_client, "{trace:?}");
    assert!(trace[0].text.contains("connection_init"), "{trace:?}");
    assert!(
        trace
            .iter()
            .any(|f| !f.from_client && f.text.contains("connection_ack")),
        "{trace:?}"
    );
    assert!(trace.windows(2).all(|w| w[0].at <= w[1].at));
    let closes = trace
        .iter()
        .filter(|f| f.text.starts_with("[close"))
        .count();
    assert!(closes >= 1, "{protocol:?}: {trace:?}");
    assert!(sim.take_trace().is_empty());
}

#[test]
fn configured_queries_are_the_ones_subscribed() {
    let mut config = config(8, Faults::default());
    config.queries = vec!["{ only }".to_owned()];
    let mut sim = Sim::new(config);
    sim.trace_pair(Some(0));
    sim.run();
    let trace = sim.take_trace();
    let subscribes: Vec<_> = trace
        .iter()
        .filter(|f| f.text.contains("\"query\""))
        .collect();
    assert!(!subscribes.is_empty(), "{trace:?}");
    assert!(subscribes.iter().all(|f| f.text.contains("{ only }")));
}

#[test]
fn every_start_is_counted_as_ended_exactly_once() {
    for seed in 0..10 {
        let mut config = config(seed, Faults::all(0.2));
        config.script.error_probability = 0.2;
        let sim = run(config);
        let stats = sim.stats();
        assert!(stats.starts > 0);
        assert_eq!(
            stats.starts,
            stats.ended_by_complete + stats.ended_by_error + stats.cancels,
            "seed {seed}: {stats:?}"
        );
    }
}
