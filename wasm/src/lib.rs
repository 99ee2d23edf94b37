//! The Terminus core compiled to wasm for the browser simulator.
