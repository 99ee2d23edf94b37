//! What the page calls: thin wasm-bindgen wrappers over [`OfflineRun`] and
//! [`LiveRun`]. Options go in and counters and logs come out as JSON text
//! (the page parses them), which keeps the boundary small and explicit.

use crate::live::{LiveOptions, LiveRun};
use crate::offline::{OfflineOptions, OfflineRun, QUERIES};
use serde::Serialize;
use wasm_bindgen::prelude::*;

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("counters and logs serialize")
}

/// The offline simulation, for the page.
#[wasm_bindgen]
pub struct OfflineSimulation {
    run: OfflineRun,
}

#[wasm_bindgen]
impl OfflineSimulation {
    /// A seeded run of `options` (JSON, see `OfflineOptions`); a clear
    /// error names the field that is wrong.
    #[wasm_bindgen(constructor)]
    pub fn new(options: &str) -> Result<OfflineSimulation, JsError> {
        let options = OfflineOptions::from_json(options).map_err(|e| JsError::new(&e))?;
        let run = OfflineRun::new(&options).map_err(|e| JsError::new(&e))?;
        Ok(OfflineSimulation { run })
    }

    /// Advances the virtual clock by at most `max_steps` deadlines; `false`
    /// once nothing is left to happen (the end state is then checked).
    pub fn step(&mut self, max_steps: u32) -> bool {
        self.run.step_batch(max_steps)
    }

    /// The counters, as JSON.
    pub fn counters(&self) -> String {
        json(&self.run.counters())
    }

    /// Every broken rule as a JSON array of strings once the run settled;
    /// `undefined` before.
    pub fn findings(&self) -> Option<String> {
        self.run.findings().map(json)
    }

    /// Logs client `index`'s frames from now on (`undefined`: nobody's).
    #[wasm_bindgen(js_name = selectClient)]
    pub fn select_client(&mut self, index: Option<u32>) {
        self.run.select_client(index.map(|i| i as usize));
    }

    /// The selected client's frames since the last call, as JSON.
    #[wasm_bindgen(js_name = takeLog)]
    pub fn take_log(&mut self) -> String {
        json(&self.run.take_log())
    }

    /// The documents simulated clients subscribe to, as JSON.
    pub fn queries() -> String {
        json(&QUERIES)
    }
}

/// The live run against a gateway, for the page.
#[wasm_bindgen]
pub struct LiveSimulation {
    run: LiveRun,
}

#[wasm_bindgen]
impl LiveSimulation {
    /// Opens the sockets of `options` (JSON, see `LiveOptions`).
    #[wasm_bindgen(constructor)]
    pub fn new(options: &str) -> Result<LiveSimulation, JsError> {
        let options = LiveOptions::from_json(options).map_err(|e| JsError::new(&e))?;
        let run = LiveRun::start(options).map_err(|e| JsError::new(&e))?;
        Ok(LiveSimulation { run })
    }

    /// Fires due timers and scheduled faults; call every animation frame.
    pub fn tick(&self) {
        self.run.tick();
    }

    /// The counters, as JSON.
    pub fn counters(&self) -> String {
        json(&self.run.counters())
    }

    /// Drops every socket at once without completing anything.
    #[wasm_bindgen(js_name = dropAll)]
    pub fn drop_all(&self) {
        self.run.drop_all();
    }

    /// Closes every client normally.
    #[wasm_bindgen(js_name = closeAll)]
    pub fn close_all(&self) {
        self.run.close_all();
    }

    /// Logs client `index`'s frames from now on (`undefined`: nobody's).
    #[wasm_bindgen(js_name = selectClient)]
    pub fn select_client(&self, index: Option<u32>) {
        self.run.select_client(index.map(|i| i as usize));
    }

    /// The selected client's frames since the last call, as JSON.
    #[wasm_bindgen(js_name = takeLog)]
    pub fn take_log(&self) -> String {
        json(&self.run.take_log())
    }
}
