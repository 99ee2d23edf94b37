//! The executor's stop is bounded (runtime-smol/src/run.rs, `Runtime`): a
//! thread stuck inside a task's poll does not hold the process's exit past
//! the bound it is given. Its own test binary, because a process installs
//! one executor.

use std::sync::mpsc;
use std::time::{Duration, Instant};
use terminus::run::Runtime;

#[test]
fn a_thread_stuck_in_a_poll_is_left_after_the_bound() {
    let runtime = Runtime::start(2).unwrap();
    assert_eq!(runtime.threads(), 2);
    let (started, has_started) = mpsc::channel();
    // A task whose poll blocks its thread for 3 s (a bug the bound is for).
    terminus::tasks::spawn(async move {
        started.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(3));
    })
    .detach();
    has_started
        .recv_timeout(Duration::from_secs(5))
        .expect("the task ran on an executor thread");
    let at = Instant::now();
    let stopped = runtime.shutdown(Duration::from_millis(300));
    let took = at.elapsed();
    assert!(!stopped, "a thread inside a 3 s poll cannot have stopped");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "the wait took {took:?}, not about the bound"
    );
}
