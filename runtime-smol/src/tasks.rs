//! Spawning with an owner and a count.
//!
//! Every task the gateway spawns goes through [`spawn`], which returns the
//! `smol::Task` handle: whoever holds the handle owns the task, and dropping
//! the handle cancels it. The live count feeds `terminus_tasks`, so a task
//! that outlives its owner shows up on `/metrics`.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE_TASKS: AtomicUsize = AtomicUsize::new(0);

/// Decrements the live count when the task's future is dropped, whether it
/// ran to completion or was cancelled.
struct LiveTask;

impl LiveTask {
    fn new() -> Self {
        LIVE_TASKS.fetch_add(1, Ordering::Relaxed);
        LiveTask
    }
}

impl Drop for LiveTask {
    fn drop(&mut self) {
        LIVE_TASKS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Spawns `future` on smol's executor and counts it until it is finished or
/// cancelled. Keep the returned handle in the thing whose lifetime the task
/// shares; dropping it cancels the task.
#[must_use = "dropping the handle cancels the task"]
pub fn spawn<F>(future: F) -> smol::Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let live = LiveTask::new();
    smol::spawn(async move {
        let _live = live;
        future.await
    })
}

/// Tasks spawned through [`spawn`] that are still alive.
pub fn live_tasks() -> usize {
    LIVE_TASKS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_handle_cancels_and_uncounts() {
        smol::block_on(async {
            let before = live_tasks();
            let task = spawn(std::future::pending::<()>());
            assert_eq!(live_tasks(), before + 1);
            drop(task);
            // Cancellation drops the future on the executor thread; wait for it.
            for _ in 0..100 {
                if live_tasks() == before {
                    break;
                }
                smol::Timer::after(std::time::Duration::from_millis(5)).await;
            }
            assert_eq!(live_tasks(), before);
            let done = spawn(async { 7 });
            assert_eq!(done.await, 7);
        });
    }
}
