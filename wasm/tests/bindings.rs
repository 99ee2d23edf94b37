//! The page's bindings, run as wasm in node by wasm-bindgen-test-runner:
//! `cargo test -p terminus-wasm --target wasm32-unknown-unknown` with
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner.
#![cfg(target_arch = "wasm32")]

use serde_json::Value;
use terminus_wasm::bindings::{LiveSimulation, OfflineSimulation};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

fn counters(sim: &OfflineSimulation) -> Value {
    serde_json::from_str(&sim.counters()).unwrap()
}

fn error_message(error: wasm_bindgen::JsError) -> String {
    let value: JsValue = error.into();
    js_sys::Reflect::get(&value, &"message".into())
        .unwrap()
        .as_string()
        .unwrap()
}

#[wasm_bindgen_test]
fn an_offline_run_with_faults_settles_with_nothing_alive() {
    let options = r#"{"seed": 4, "clients": 120, "durationMs": 15000,
        "faults": {"abruptDisconnect": 0.1, "lostPong": 0.05, "slowReader": 0.05,
                   "upstreamError": 0.1, "duplicateId": 0.05, "malformedFrame": 0.05}}"#;
    let mut sim = OfflineSimulation::new(options)
        .map_err(error_message)
        .unwrap();
    assert_eq!(sim.findings(), None);
    let mut batches = 0;
    let mut peak = 0;
    while sim.step(100) {
        batches += 1;
        assert!(batches < 100_000, "did not settle");
        peak = peak.max(counters(&sim)["liveOperations"].as_u64().unwrap());
    }
    assert!(peak > 0, "operations ran");
    let c = counters(&sim);
    assert_eq!(c["settled"], true);
    assert_eq!(c["liveOperations"], 0, "{c}");
    assert_eq!(c["violations"], 0, "{c}");
    assert_eq!(c["openClients"], 0, "{c}");
    let started = c["started"].as_u64().unwrap();
    let ended = ["completed", "errored", "cancelled"]
        .iter()
        .map(|k| c[*k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(started, ended, "{c}");
    assert_eq!(sim.findings().as_deref(), Some("[]"));
    // Settled runs stay settled.
    assert!(!sim.step(10));
}

#[wasm_bindgen_test]
fn the_log_of_the_selected_client_is_json_frames() {
    let mut sim = OfflineSimulation::new(r#"{"clients": 3, "durationMs": 5000}"#).unwrap();
    sim.select_client(Some(1));
    let mut frames = Vec::new();
    while sim.step(20) {
        let batch: Vec<Value> = serde_json::from_str(&sim.take_log()).unwrap();
        frames.extend(batch);
    }
    assert!(frames.len() > 2, "{frames:?}");
    assert_eq!(frames[0]["fromClient"], true);
    assert!(frames[0]["text"]
        .as_str()
        .unwrap()
        .contains("connection_init"));
    assert!(frames.iter().any(|f| f["fromClient"] == false));
}

#[wasm_bindgen_test]
fn bad_options_are_refused_with_a_clear_message() {
    let message = error_message(OfflineSimulation::new(r#"{"clients": -1}"#).err().unwrap());
    assert!(message.contains("invalid simulation options"), "{message}");
    let message = error_message(
        OfflineSimulation::new(r#"{"faults": {"slowReader": 3}}"#)
            .err()
            .unwrap(),
    );
    assert!(message.contains("faults.slowReader"), "{message}");
    let message = error_message(
        LiveSimulation::new(r#"{"url": "http://x/graphql"}"#)
            .err()
            .unwrap(),
    );
    assert!(message.contains("ws://"), "{message}");
    let message = error_message(
        LiveSimulation::new(r#"{"url": "ws://127.0.0.1:1/graphql", "clients": 0}"#)
            .err()
            .unwrap(),
    );
    assert!(message.contains("clients"), "{message}");
}

#[wasm_bindgen_test]
fn the_queries_are_documents_of_the_demo_schema() {
    let queries: Vec<String> = serde_json::from_str(&OfflineSimulation::queries()).unwrap();
    assert!(queries.iter().any(|q| q.contains("ticks(everyMs")));
    assert!(queries.iter().any(|q| q.contains("hello(name")));
}
