//! A hyper executor whose tasks are owned.
//!
//! hyper's HTTP/2 code spawns helper futures (the connection driver, one per
//! stream that pipes a body). Instead of detaching them, [`OwnedExecutor`]
//! spawns each through [`crate::tasks::spawn`] and keeps the handle in a
//! collection owned by whoever created the executor (an upstream, the demo
//! server): dropping the owner, or calling [`OwnedExecutor::cancel_all`],
//! cancels every one of them.

use std::future::Future;
use std::sync::{Arc, Mutex};

/// Spawns hyper's futures as counted tasks held by the executor's owner.
#[derive(Clone, Default)]
pub(crate) struct OwnedExecutor {
    tasks: Arc<Mutex<Tasks>>,
}

/// The handles, and the length at which finished ones are next dropped.
#[derive(Default)]
struct Tasks {
    handles: Vec<smol::Task<()>>,
    sweep_at: usize,
}

impl OwnedExecutor {
    /// An executor with no tasks yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Cancels every task spawned so far and waits until each is gone.
    pub(crate) async fn cancel_all(&self) {
        let tasks = std::mem::take(&mut self.lock().handles);
        for task in tasks {
            task.cancel().await;
        }
    }

    /// Cancels every task spawned so far without waiting (for `Drop`).
    pub(crate) fn cancel_all_now(&self) {
        let tasks = std::mem::take(&mut self.lock().handles);
        drop(tasks);
    }

    /// Tasks spawned and not finished yet.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.lock()
            .handles
            .iter()
            .filter(|task| !task.is_finished())
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tasks> {
        // A panic while holding this lock leaves a Vec that is still valid.
        self.tasks
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl<F> hyper::rt::Executor<F> for OwnedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        let task = crate::tasks::spawn(async move {
            future.await;
        });
        let mut tasks = self.lock();
        // Finished handles are dropped when the collection has doubled
        // since the last sweep, so it stays at most twice the live tasks
        // (plus a few) and a spawn costs O(1) amortized: a server with
        // 10,000 live streams no longer scans them all on every spawn.
        if tasks.handles.len() >= tasks.sweep_at {
            tasks.handles.retain(|task| !task.is_finished());
            tasks.sweep_at = (tasks.handles.len() * 2).max(16);
        }
        tasks.handles.push(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;

    #[test]
    fn tasks_are_held_until_cancelled() {
        smol::block_on(async {
            let executor = OwnedExecutor::new();
            executor.execute(std::future::pending::<()>());
            executor.execute(async {});
            smol::Timer::after(std::time::Duration::from_millis(20)).await;
            assert_eq!(executor.live(), 1, "the finished task is not live");
            executor.cancel_all().await;
            assert_eq!(executor.live(), 0);
        });
    }
}
