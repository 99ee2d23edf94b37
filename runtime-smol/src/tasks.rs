//! Spawning with an owner and a count.
//!
//! Every task the gateway spawns goes through [`spawn`], which returns the
//! `smol::Task` handle: whoever holds the handle owns the task, and dropping
//! the handle cancels it. The live count feeds `terminus_tasks`, so a task
//! that outlives its owner shows up on `/metrics`.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

static LIVE_TASKS: AtomicUsize = AtomicUsize::new(0);

/// The executor of the `terminus` binary, run by `[runtime] threads`
/// threads (runtime-smol/src/run.rs, `Runtime`). Unset in tests and other
/// library use: tasks then go to smol's global executor.
static EXECUTOR: OnceLock<Arc<async_executor::Executor<'static>>> = OnceLock::new();

/// Makes `executor` the one [`spawn`] uses from now on; false if one was
/// installed before (the first stays).
pub(crate) fn install(executor: Arc<async_executor::Executor<'static>>) -> bool {
    EXECUTOR.set(executor).is_ok()
}

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

/// Spawns `future` on the installed executor (smol's global one if none)
/// and counts it until it is finished or
/// cancelled. Keep the returned handle in the thing whose lifetime the task
/// shares; dropping it cancels the task.
#[must_use = "dropping the handle cancels the task"]
pub fn spawn<F>(future: F) -> smol::Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let counted = Counted {
        _live: LiveTask::new(),
        future,
    };
    match EXECUTOR.get() {
        Some(executor) => executor.spawn(counted),
        None => smol::spawn(counted),
    }
}

pin_project_lite::pin_project! {
    /// A future counted in [`live_tasks`] while it exists. A struct, not an
    /// `async` block: a block that awaits a captured future keeps two
    /// copies of its size (the capture and the awaited value), and every
    /// connection and operation task is spawned through here.
    struct Counted<F> {
        _live: LiveTask,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.project().future.poll(cx)
    }
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
