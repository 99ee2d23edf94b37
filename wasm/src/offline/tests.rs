use super::*;

fn run_to_end(options: &OfflineOptions) -> OfflineRun {
    let mut run = OfflineRun::new(options).unwrap();
    let mut batches = 0;
    while run.step_batch(500) {
        batches += 1;
        assert!(batches < 10_000, "the run did not settle");
    }
    run
}

#[test]
fn a_faulty_run_of_many_clients_ends_clean_and_empty() {
    let options = OfflineOptions {
        seed: 11,
        clients: 300,
        duration_ms: 20_000,
        faults: FaultKnobs {
            abrupt_disconnect: 0.1,
            lost_pong: 0.05,
            slow_reader: 0.05,
            upstream_error: 0.1,
            duplicate_id: 0.05,
            malformed_frame: 0.05,
            reject_auth: 0.02,
        },
        ..OfflineOptions::default()
    };
    let run = run_to_end(&options);
    assert_eq!(run.findings(), Some(&[][..]), "{:?}", run.findings());
    let c = run.counters();
    assert!(c.settled);
    assert_eq!(c.live_operations, 0, "{c:?}");
    assert_eq!(c.open_clients, 0, "{c:?}");
    assert_eq!(c.upstream_calls, 0, "{c:?}");
    assert_eq!(c.violations, 0);
    assert!(c.started > 300, "{c:?}");
    assert!(c.completed > 0 && c.errored > 0 && c.cancelled > 0, "{c:?}");
    assert!(c.faults > 0);
    assert_eq!(c.started, c.completed + c.errored + c.cancelled, "{c:?}");
    // The real engine answered: hello results and ticks went out.
    assert!(run.sim().upstream().calls_started() > 0);
    assert!(run.sim().stats().client_nexts > 0);
}

#[test]
fn the_same_seed_gives_the_same_counters() {
    let options = OfflineOptions {
        seed: 3,
        clients: 40,
        faults: FaultKnobs {
            abrupt_disconnect: 0.2,
            upstream_error: 0.2,
            ..FaultKnobs::default()
        },
        ..OfflineOptions::default()
    };
    assert_eq!(
        run_to_end(&options).counters(),
        run_to_end(&options).counters()
    );
}

#[test]
fn the_selected_client_log_shows_its_conversation() {
    let mut run = OfflineRun::new(&OfflineOptions {
        clients: 5,
        ..OfflineOptions::default()
    })
    .unwrap();
    run.select_client(Some(2));
    let mut log = Vec::new();
    while run.step_batch(50) {
        log.extend(run.take_log());
    }
    log.extend(run.take_log());
    assert!(
        log[0].from_client && log[0].text.contains("connection_init"),
        "{log:?}"
    );
    assert!(log
        .iter()
        .any(|f| !f.from_client && f.text.contains("connection_ack")));
    assert!(log.iter().any(|f| f.text.contains("\"query\"")));
    // Out of range selects nobody.
    run.select_client(Some(99));
    assert!(run.take_log().is_empty());
}

#[test]
fn bad_options_are_refused_with_the_field_named() {
    let err = OfflineOptions::from_json(r#"{"clients": 0}"#).unwrap_err();
    assert!(err.contains("clients"), "{err}");
    let err = OfflineOptions::from_json(r#"{"faults": {"lostPong": 2}}"#).unwrap_err();
    assert!(err.contains("faults.lostPong"), "{err}");
    let err = OfflineOptions::from_json(r#"{"clients": 5, "colour": "red"}"#).unwrap_err();
    assert!(err.contains("colour"), "{err}");
    let err = OfflineOptions::from_json("[").unwrap_err();
    assert!(err.contains("invalid simulation options"), "{err}");
    let ok = OfflineOptions::from_json(r#"{"clients": 5, "faults": {"slowReader": 0.5}}"#).unwrap();
    assert_eq!(ok.clients, 5);
    assert_eq!(ok.faults.slow_reader, 0.5);
    assert_eq!(ok.seed, OfflineOptions::default().seed);
}
