//! `share`: the shared-subscription table (`core/src/share.rs`) under its
//! `ShareLedger`, driven by arbitrary subscribes, unsubscribes, items and
//! upstream ends and failures (late ones for streams already gone
//! included) and full subscriber queues (skipped or closed, by the first
//! byte's fourth bit) over 1 to 8 keys. No shared stream outlives its last
//! subscriber: the ledger holds after every step, and after the final mass
//! disconnect nothing is left alive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use terminus_core::share::LagPolicy;
use terminus_core::sim::run_shared_ops_with;

fuzz_target!(|data: &[u8]| {
    let Some((keys, ops)) = data.split_first() else {
        return;
    };
    let ops = &ops[..ops.len().min(2048)];
    let policy = if keys & 8 == 0 {
        LagPolicy::Skip
    } else {
        LagPolicy::Close
    };
    let report = run_shared_ops_with(ops, 1 + usize::from(*keys % 8), policy);
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!(report.left_alive, (0, 0));
    assert!(report.peak_streams <= report.streams_started);
});
